//go:build linux

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/ila/datapath"
	"github.com/ilamesh/ilamesh/mapsrv/etcdstore"
)

// cmdRouter runs the fabric's ILA router (ILA-R): the datapath in router
// mode on the fabric's ports, its full table fed by the mapping watch. The
// lab starts it in the background (`ilalab router ...`); it is not meant to
// be run by hand.
func cmdRouter(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flags("router", stderr)
	netnsPath := fs.String("netns", "", "network namespace path of the ports")
	ifaces := fs.String("ifaces", "", "comma-separated ports to attach the router to")
	pin := fs.String("pin", "", "bpffs directory to pin maps and links in")
	etcd := fs.String("etcd", "", "comma-separated etcd endpoints")
	events := fs.String("events", "", "append applied mappings as JSON lines to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *ifaces == "" || *etcd == "" {
		return errors.New("router: --ifaces and --etcd are required")
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	dp, err := datapath.Open(datapath.Config{Router: true, PinPath: *pin})
	if err != nil {
		return fmt.Errorf("router datapath: %w", err)
	}
	defer dp.Close()
	for _, ifn := range strings.Split(*ifaces, ",") {
		a := datapath.Attachment{Ifname: ifn, NetNS: *netnsPath, Role: datapath.RoleRouter}
		if err := dp.Attach(a); err != nil {
			return fmt.Errorf("router: attach %s: %w", a, err)
		}
		log.Info("attached", "iface", ifn)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: strings.Split(*etcd, ","), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return fmt.Errorf("router: etcd client: %w", err)
	}
	defer cli.Close()
	var ev io.Writer = io.Discard
	if *events != "" {
		f, err := os.OpenFile(*events, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return fmt.Errorf("router: events file: %w", err)
		}
		defer f.Close()
		ev = f
	}
	r := &router{dp: dp, log: log, ev: ev, domains: map[string]ila.Domain{}, tasks: map[string]ila.Task{}}
	w := etcdstore.NewWatcher(cli, cli, etcdstore.WatchOptions{Logger: log})
	log.Info("router watching", "etcd", *etcd)
	return w.Watch(ctx, r.apply)
}

type router struct {
	mu      sync.Mutex
	dp      *datapath.Datapath
	log     *slog.Logger
	ev      io.Writer
	domains map[string]ila.Domain
	tasks   map[string]ila.Task // by domain/identifier
}

// AppliedEvent is one line of an events file: a node applied a mapping.
type AppliedEvent struct {
	Time     time.Time   `json:"time"`
	Node     string      `json:"node"`
	Task     string      `json:"task"`
	SIR      string      `json:"sir"`
	Locator  ila.Locator `json:"locator"`
	NVE      string      `json:"nve"`
	Version  int64       `json:"version"`
	Revision int64       `json:"revision"`
	Deleted  bool        `json:"deleted,omitempty"`
}

func (r *router) apply(e ila.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch e.Type {
	case ila.EventDomainUpsert:
		d := *e.Domain
		if err := r.dp.AddDomain(d); err != nil {
			r.log.Error("add domain", "domain", d.Name, "err", err)
			return
		}
		r.domains[d.Name] = d
		for _, t := range r.tasks {
			if t.Domain == d.Name {
				r.upsert(t, e.Revision)
			}
		}
	case ila.EventTaskUpsert:
		t := *e.Task
		r.tasks[t.Domain+"/"+t.Identifier.Hex()] = t
		r.upsert(t, e.Revision)
	case ila.EventTaskDelete:
		t := *e.Task
		delete(r.tasks, t.Domain+"/"+t.Identifier.Hex())
		if d, ok := r.domains[t.Domain]; ok {
			if err := r.dp.DeleteMapping(d.SIR, t.Identifier); err != nil {
				r.log.Error("delete mapping", "task", t.Name, "err", err)
			}
			r.record(t, d, e.Revision, true)
		}
	}
}

func (r *router) upsert(t ila.Task, rev int64) {
	d, ok := r.domains[t.Domain]
	if !ok {
		return
	}
	if t.State != ila.StateActive && t.State != "" {
		if err := r.dp.DeleteMapping(d.SIR, t.Identifier); err != nil {
			r.log.Error("delete mapping", "task", t.Name, "err", err)
		}
		r.record(t, d, rev, true)
		return
	}
	if err := r.dp.UpsertMapping(t.Mapping(d)); err != nil {
		r.log.Error("upsert mapping", "task", t.Name, "err", err)
		return
	}
	r.record(t, d, rev, false)
}

func (r *router) record(t ila.Task, d ila.Domain, rev int64, deleted bool) {
	b, _ := json.Marshal(AppliedEvent{
		Time: time.Now(), Node: "router", Task: t.Name, SIR: d.SIR.Addr(t.Identifier).String(),
		Locator: t.Locator, NVE: t.NVE, Version: t.Version, Revision: rev, Deleted: deleted,
	})
	_, _ = r.ev.Write(append(b, '\n'))
}
