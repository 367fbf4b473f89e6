// Package zapslog sends the logs of libraries that log through zap (the
// embedded etcd server and the etcd client) to a log/slog logger, so that
// their warnings, errors and fatal messages appear in the daemon's log.
package zapslog

import (
	"context"
	"log/slog"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// New returns a zap logger that writes to l. Zap's debug and info levels
// become slog debug (etcd is chatty at info); warn stays warn; error and
// above become error, with the zap level kept in a "zap_level" attribute
// (so that a fatal message is visible before zap exits the process).
// Every record carries component=name.
func New(l *slog.Logger, name string) *zap.Logger {
	return zap.New(&core{l: l.With("component", name)})
}

type core struct {
	l *slog.Logger
}

func level(z zapcore.Level) slog.Level {
	switch {
	case z <= zapcore.InfoLevel:
		return slog.LevelDebug
	case z == zapcore.WarnLevel:
		return slog.LevelWarn
	}
	return slog.LevelError
}

func attrs(fields []zapcore.Field) []any {
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range fields {
		f.AddTo(enc)
	}
	out := make([]any, 0, 2*len(enc.Fields))
	for k, v := range enc.Fields {
		out = append(out, k, v)
	}
	return out
}

func (c *core) Enabled(z zapcore.Level) bool {
	return c.l.Enabled(context.Background(), level(z))
}

func (c *core) With(fields []zapcore.Field) zapcore.Core {
	return &core{l: c.l.With(attrs(fields)...)}
}

func (c *core) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	// Fatal and panic entries are always written: zap ends the process
	// (or panics) after writing them.
	if c.Enabled(e.Level) || e.Level >= zapcore.DPanicLevel {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c *core) Write(e zapcore.Entry, fields []zapcore.Field) error {
	args := attrs(fields)
	if e.LoggerName != "" {
		args = append(args, "logger", e.LoggerName)
	}
	if e.Level >= zapcore.ErrorLevel {
		args = append(args, "zap_level", e.Level.String())
	}
	c.l.Log(context.Background(), level(e.Level), e.Message, args...)
	return nil
}

func (c *core) Sync() error { return nil }
