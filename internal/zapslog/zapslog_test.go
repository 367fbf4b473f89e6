package zapslog

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"go.uber.org/zap"
)

func TestLevelsAndFields(t *testing.T) {
	var buf bytes.Buffer
	l := New(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})), "etcd")
	l.Info("chatty")
	l.With(zap.String("member", "m1")).Warn("slow fdatasync", zap.Duration("took", 2e9))
	l.Error("cannot open wal", zap.Error(errTest{}))
	out := buf.String()
	for _, want := range []string{
		`level=WARN msg="slow fdatasync" component=etcd member=m1 took=2s`,
		`level=ERROR msg="cannot open wal" component=etcd error="too many open files" zap_level=error`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "chatty") {
		t.Errorf("info became visible at slog info level:\n%s", out)
	}
}

type errTest struct{}

func (errTest) Error() string { return "too many open files" }
