package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/internal/etcdtls"
	"github.com/ilamesh/ilamesh/locator"
	"github.com/ilamesh/ilamesh/mapsrv"
)

// Roles of ilad.
const (
	// roleNVE: the node agent of a host (ILA-N), the default.
	roleNVE = "nve"
	// roleRouter: an ILA router (ILA-R) of the fabric or the border: the
	// datapath in router mode on RouterPorts, holding the whole table.
	roleRouter = "router"
)

// config is ilad's configuration: flags, or a JSON file (--config) parsed
// into the same struct; flags given on the command line win over the file.
type config struct {
	locator.Config

	// Role is nve (default) or router.
	Role string `json:"role,omitempty"`
	// RouterPorts ("ports", router role) are the interfaces the router
	// programs are attached to: where traffic for the SIR prefixes arrives
	// from NVEs and from outside.
	RouterPorts []string `json:"ports,omitempty"`
	// Events, if set, is a file every applied task mapping is appended to
	// as a JSON line (time, task, SIR address, locator, version, store
	// revision): when each node applied a move, for timelines.
	Events string `json:"events,omitempty"`

	// Uplink is the NVE's fabric-facing interface.
	Uplink string `json:"uplink"`
	// Underlay is the NVE's fabric address (VTEP of the IPv4 layer); when
	// empty the IPv4 layer is off.
	Underlay netip.Addr `json:"underlay,omitzero"`
	// Mapsrv is mapsrv's registration (UDP) address, or the addresses of
	// its replicas (a JSON string, comma-separated, or an array): ilad
	// speaks to one at a time and moves to the next when it stops
	// answering (docs/FAILOVER.md "Several mapsrv replicas").
	Mapsrv addrPorts `json:"mapsrv,omitempty"`
	// KeyFile holds the registration keys ("<keyid> <name> <hex>" lines);
	// KeyID is this node's key (default: the node's newest key in the file).
	KeyFile string `json:"key_file,omitempty"`
	KeyID   uint32 `json:"key_id,omitempty"`
	// MapsrvName owns the key mapsrv signs notifications with (default
	// "mapsrv"); notifications signed by any other key are refused.
	MapsrvName string `json:"mapsrv_name,omitempty"`
	// NotifyListen is where mapsrv's move notifications arrive (UDP).
	NotifyListen netip.AddrPort `json:"notify_listen,omitzero"`
	// Etcd endpoints (read-only use), e.g. unix:///run/etcd.sock or
	// http://[2001:db8::1]:2379; EtcdPrefix default /ila/v1/.
	Etcd       []string `json:"etcd"`
	EtcdPrefix string   `json:"etcd_prefix,omitempty"`
	// etcd_cert, etcd_key (a client certificate, for clusters with
	// client-cert-auth) and etcd_ca (the servers' CA bundle).
	etcdtls.Files
	// BPFFS is the pin directory (default /sys/fs/bpf/ila/<node>); a bpffs
	// is mounted at /sys/fs/bpf if none holds it.
	BPFFS string `json:"bpffs,omitempty"`
	// MaxMappings sizes the datapath's mapping table (0: 1,048,576
	// entries). An NVE in push mode and a router hold one entry per task:
	// give them about twice the task count (docs/SCALE.md). Pinned tables
	// of another size are not adopted (ilad says so): unpin them first.
	MaxMappings int `json:"max_mappings,omitempty"`
	// API is the local API address: a unix socket path (default
	// /run/ilad/<node>.sock) or HOST:PORT (inside the NVE's namespace).
	API string `json:"api,omitempty"`
	// APITokenFile, APICert and APIKey secure a HOST:PORT API: bearer
	// tokens (mapsrv's token file format; "read-only TOKEN" lines may
	// only read: ilactl where and monitor), needed on TCP, and TLS, needed
	// off loopback. APIAdvertise is the URL operators reach it at
	// (https://[fd99::1]:7483): heartbeats carry it to mapsrv's NVE status,
	// where ilactl where finds it.
	APITokenFile string `json:"api_token_file,omitempty"`
	APICert      string `json:"api_cert,omitempty"`
	APIKey       string `json:"api_key,omitempty"`
	APIAdvertise string `json:"api_advertise,omitempty"`
	// Metrics is the Prometheus listen address (HOST:PORT inside the NVE's
	// namespace); empty: off.
	Metrics string `json:"metrics,omitempty"`
	// NetNS is the NVE's network namespace (path like /var/run/netns/nve1
	// or a name under /var/run/netns); empty: ilad's own.
	NetNS string `json:"netns,omitempty"`
	// MissPolicy: pass (untranslated toward an ILA router) or drop.
	MissPolicy string `json:"miss_policy,omitempty"`
	// ND turns the ND emulator on (default true).
	ND *bool `json:"nd,omitempty"`
	// BGP announces the locators (or a router's SIR prefixes) to the
	// fabric; nil: off (the fabric routes them some other way).
	BGP *bgpSettings `json:"bgp,omitempty"`
	// LogLevel debug|info|warn|error, LogFormat text|json.
	LogLevel  string `json:"log_level,omitempty"`
	LogFormat string `json:"log_format,omitempty"`
}

// stringList is a repeatable, comma-separable flag.
type stringList []string

func (s *stringList) String() string { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error {
	for _, x := range strings.Split(v, ",") {
		if x = strings.TrimSpace(x); x != "" {
			*s = append(*s, x)
		}
	}
	return nil
}

// addrPorts are mapsrv's registration addresses (its replicas), in the
// order ilad tries them. In the config file: a string ("[::1]:4790", or
// comma-separated) or an array of strings.
type addrPorts []netip.AddrPort

// parseAddrPorts parses addresses, refusing duplicates and a mix of IPv4
// and IPv6 (one socket speaks to all of them).
func parseAddrPorts(ss []string) (addrPorts, error) {
	var out addrPorts
	for _, s := range ss {
		for _, x := range strings.Split(s, ",") {
			x = strings.TrimSpace(x)
			if x == "" {
				continue
			}
			a, err := netip.ParseAddrPort(x)
			if err != nil {
				return nil, err
			}
			a = netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
			for _, b := range out {
				if a == b {
					return nil, fmt.Errorf("address %v given twice", a)
				}
				if a.Addr().Is4() != b.Addr().Is4() {
					return nil, fmt.Errorf("addresses %v and %v: all IPv4 or all IPv6 (one socket reaches them)", b, a)
				}
			}
			out = append(out, a)
		}
	}
	return out, nil
}

func (a *addrPorts) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		v, err := parseAddrPorts([]string{one})
		*a = v
		return err
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return errors.New("mapsrv: want an address string or an array of them")
	}
	v, err := parseAddrPorts(many)
	*a = v
	return err
}

func (a addrPorts) String() string {
	s := make([]string, len(a))
	for i, x := range a {
		s[i] = x.String()
	}
	return strings.Join(s, ",")
}

// parseConfig reads flags and the optional file.
func parseConfig(args []string, stderr io.Writer) (*config, error) {
	fs := flag.NewFlagSet("ilad", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: ilad [flags]\n\nilad is the ILA node agent of one NVE (-role nve, the default): it keeps the eBPF\ndatapath equal to the mapping service, attaches and registers local tasks and\nemulates neighbour discovery. With -role router it is an ILA router: the datapath\nin router mode on -ports, holding the whole mapping table.\n\nflags:\n")
		fs.PrintDefaults()
	}
	var (
		file                                             string
		node, uplink, underlay, keyFile, mapsrvName      string
		notify, prefix, bpffs, api, metrics, netns, mode string
		apiTokens, apiCert, apiKey, apiAdvertise         string
		missPolicy, stateFile, logLevel, logFormat       string
		role, events                                     string
		etcdCert, etcdKey, etcdCA                        string
		etcdUser, etcdPasswordFile                       string
		keyID                                            uint
		inFlight, lifetime, pullTTL, heartbeat           time.Duration
		missRate                                         float64
		pullMax, maxMappings                             int
		locators, etcd, ports, mapsrv                    stringList
		nd                                               bool
	)
	fs.StringVar(&file, "config", "", "JSON configuration `file` (flags override it)")
	fs.StringVar(&role, "role", roleNVE, "`role`: nve (node agent of a host) or router (ILA router: whole table on -ports)")
	fs.StringVar(&node, "node", "", "this NVE's `name` in the mapping store, or the router's name (required)")
	fs.Var(&locators, "locator", "this NVE's locator, `[DOMAIN=]LOC` (e.g. 2001:db8:0:1 or prod=2001:db8:0:1::/64); repeatable")
	fs.StringVar(&uplink, "uplink", "", "fabric-facing `interface`")
	fs.Var(&ports, "ports", "router role: `interfaces` to attach the router to, comma-separated; repeatable")
	fs.StringVar(&events, "events", "", "append every applied task mapping to this `file` as a JSON line")
	fs.StringVar(&underlay, "underlay", "", "fabric `address` of the NVE (VTEP of the IPv4 layer; empty: IPv4 layer off)")
	fs.Var(&mapsrv, "mapsrv", "mapsrv registration `address` ([IP]:PORT, UDP); several (replicas): comma-separated or repeated, the first tried first")
	fs.StringVar(&keyFile, "key-file", "", "registration keys `file` (\"<keyid> <name> <hex-secret>\" lines)")
	fs.UintVar(&keyID, "key-id", 0, "key `id` this node signs with (default: its newest key in --key-file)")
	fs.StringVar(&mapsrvName, "mapsrv-name", "mapsrv", "owner `name` of the key mapsrv signs move notifications with")
	fs.StringVar(&notify, "notify-listen", "", "UDP `address` for mapsrv's move notifications (e.g. [::]:7481; empty: off)")
	fs.Var(&etcd, "etcd", "etcd `endpoints`, comma-separated (unix:///path or http://host:port)")
	fs.StringVar(&prefix, "etcd-prefix", "/ila/v1/", "root `prefix` of the mapping in etcd")
	fs.StringVar(&etcdCert, "etcd-cert", "", "client certificate `file` for etcd (PEM; with -etcd-key)")
	fs.StringVar(&etcdKey, "etcd-key", "", "private key `file` of -etcd-cert")
	fs.StringVar(&etcdCA, "etcd-ca", "", "CA bundle `file` for etcd's server certificates")
	fs.StringVar(&etcdUser, "etcd-user", "", "etcd `user` (an etcd with authentication on: a reader, see mapsrv rbac-init)")
	fs.StringVar(&etcdPasswordFile, "etcd-password-file", "", "`file` holding the password of -etcd-user")
	fs.StringVar(&bpffs, "bpffs", "", "bpffs pin `directory` (default /sys/fs/bpf/ila/<node>)")
	fs.StringVar(&api, "api", "", "local API `address`: socket path or HOST:PORT (default /run/ilad/<node>.sock)")
	fs.StringVar(&apiTokens, "api-token-file", "", "bearer tokens a HOST:PORT -api requires (`file`: mapsrv's token file format, \"read-only TOKEN\" lines may only read)")
	fs.StringVar(&apiCert, "api-cert", "", "serve a HOST:PORT -api over TLS with this PEM certificate `file` (needed off loopback)")
	fs.StringVar(&apiKey, "api-key", "", "private key `file` (PEM) of -api-cert")
	fs.StringVar(&apiAdvertise, "api-advertise", "", "`URL` operators reach the local API at (e.g. https://[fd99::1]:7483): sent to mapsrv in heartbeats, where ilactl where finds it")
	fs.StringVar(&metrics, "metrics", "", "Prometheus listen `address` HOST:PORT (in the NVE namespace; empty: off)")
	fs.StringVar(&netns, "netns", "", "network `namespace` to operate in (path or name under /var/run/netns)")
	fs.StringVar(&mode, "mode", "push", "table `mode`: push (full table) or pull (cache misses only)")
	fs.StringVar(&missPolicy, "miss-policy", "pass", "`policy` for task packets without a mapping: pass or drop")
	fs.DurationVar(&inFlight, "in-flight", 10*time.Second, "deprecated and ignored: the in-flight `time` is mapsrv's (--in-flight), from the store and its notifications")
	fs.DurationVar(&lifetime, "lifetime", 120*time.Second, "registration `lifetime` requested (re-registered at half the grant)")
	fs.DurationVar(&heartbeat, "heartbeat", time.Second, "heartbeat `interval` to mapsrv (its --heartbeat-interval; negative: none)")
	fs.Float64Var(&missRate, "miss-rate", 200, "at most this many cache-miss `lookups` per second")
	fs.DurationVar(&pullTTL, "pull-ttl", 5*time.Minute, "pull mode: an entry installed on a miss stays this `long` (a flow still using it misses again and pulls it again)")
	fs.IntVar(&maxMappings, "max-mappings", 0, "size of the datapath's mapping `table` (0: 1048576); about twice the tasks for push mode and routers")
	fs.IntVar(&pullMax, "pull-max", 0, "pull mode: at most this many `entries` installed on misses, the oldest evicted first (0: the datapath's size)")
	fs.StringVar(&stateFile, "state-file", "", "`file` recording API-attached tasks across restarts (default /run/ilad/<node>.tasks.json; none: off)")
	fs.BoolVar(&nd, "nd", true, "run the ND emulator on task ports")
	fs.StringVar(&logLevel, "log-level", "info", "log `level`: debug, info, warn, error")
	fs.StringVar(&logFormat, "log-format", "text", "log `format`: text or json")
	bf := addBGPFlags(fs)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	cfg := &config{}
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("config file: %w", err)
		}
		dec := json.NewDecoder(strings.NewReader(string(b)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(cfg); err != nil {
			return nil, fmt.Errorf("config file %s: %w", file, err)
		}
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	// A flag applies when given, or when the file left the field empty.
	str := func(name string, dst *string, v string) {
		if set[name] || *dst == "" {
			*dst = v
		}
	}
	str("role", &cfg.Role, role)
	str("events", &cfg.Events, events)
	str("node", &cfg.Node, node)
	str("uplink", &cfg.Uplink, uplink)
	str("key-file", &cfg.KeyFile, keyFile)
	str("mapsrv-name", &cfg.MapsrvName, mapsrvName)
	str("etcd-prefix", &cfg.EtcdPrefix, prefix)
	str("etcd-cert", &cfg.Files.Cert, etcdCert)
	str("etcd-key", &cfg.Files.Key, etcdKey)
	str("etcd-ca", &cfg.Files.CA, etcdCA)
	str("etcd-user", &cfg.Files.User, etcdUser)
	str("etcd-password-file", &cfg.Files.PasswordFile, etcdPasswordFile)
	str("bpffs", &cfg.BPFFS, bpffs)
	str("api", &cfg.API, api)
	str("api-token-file", &cfg.APITokenFile, apiTokens)
	str("api-cert", &cfg.APICert, apiCert)
	str("api-key", &cfg.APIKey, apiKey)
	str("api-advertise", &cfg.APIAdvertise, apiAdvertise)
	str("metrics", &cfg.Metrics, metrics)
	str("netns", &cfg.NetNS, netns)
	str("miss-policy", &cfg.MissPolicy, missPolicy)
	str("state-file", &cfg.StateFile, stateFile)
	str("log-level", &cfg.LogLevel, logLevel)
	str("log-format", &cfg.LogFormat, logFormat)
	if set["mode"] || cfg.Mode == "" {
		cfg.Mode = locator.Mode(mode)
	}
	if set["key-id"] || cfg.KeyID == 0 {
		cfg.KeyID = uint32(keyID)
	}
	_ = inFlight // accepted for old command lines, ignored (locator.Config.InFlight)
	if set["lifetime"] || cfg.Lifetime == 0 {
		cfg.Lifetime = ila.Duration(lifetime)
	}
	if set["heartbeat"] || cfg.Heartbeat == 0 {
		cfg.Heartbeat = ila.Duration(heartbeat)
	}
	if set["miss-rate"] || cfg.MissRate == 0 {
		cfg.MissRate = missRate
	}
	if set["pull-ttl"] || cfg.PullTTL == 0 {
		cfg.PullTTL = ila.Duration(pullTTL)
	}
	if set["pull-max"] || cfg.PullMax == 0 {
		cfg.PullMax = pullMax
	}
	if set["max-mappings"] || cfg.MaxMappings == 0 {
		cfg.MaxMappings = maxMappings
	}
	if set["nd"] || cfg.ND == nil {
		cfg.ND = &nd
	}
	if set["etcd"] || len(cfg.Etcd) == 0 {
		cfg.Etcd = etcd
	}
	if set["ports"] || len(cfg.RouterPorts) == 0 {
		cfg.RouterPorts = ports
	}
	if set["locator"] || len(cfg.Locators) == 0 {
		cfg.Locators = nil
		for _, s := range locators {
			ls, err := locator.ParseLocatorSpec(s)
			if err != nil {
				return nil, fmt.Errorf("flag -locator: %w", err)
			}
			cfg.Locators = append(cfg.Locators, ls)
		}
	}
	var err error
	if set["underlay"] || (!cfg.Underlay.IsValid() && underlay != "") {
		if cfg.Underlay, err = netip.ParseAddr(underlay); err != nil {
			return nil, fmt.Errorf("flag -underlay: %w", err)
		}
	}
	if set["mapsrv"] {
		if cfg.Mapsrv, err = parseAddrPorts(mapsrv); err != nil {
			return nil, fmt.Errorf("flag -mapsrv: %w", err)
		}
	}
	if set["notify-listen"] || (!cfg.NotifyListen.IsValid() && notify != "") {
		if cfg.NotifyListen, err = netip.ParseAddrPort(notify); err != nil {
			return nil, fmt.Errorf("flag -notify-listen: %w", err)
		}
	}
	if err := bf.apply(cfg, set); err != nil {
		return nil, err
	}
	return cfg, cfg.check()
}

// check validates what locator.Config does not cover and fills defaults.
func (c *config) check() error {
	if c.Node == "" {
		return errors.New("node name: empty (use -node)")
	}
	if strings.ContainsAny(c.Node, "/ \t") {
		return fmt.Errorf("node name %q: contains '/' or white space", c.Node)
	}
	switch c.Role {
	case "":
		c.Role = roleNVE
	case roleNVE, roleRouter:
	default:
		return fmt.Errorf("role %q: want nve or router", c.Role)
	}
	if c.Role == roleRouter {
		if err := c.checkRouter(); err != nil {
			return err
		}
	} else if len(c.RouterPorts) > 0 {
		return errors.New("-ports is for -role router (an NVE attaches -uplink and its task ports)")
	}
	if c.Role == roleNVE && len(c.Locators) == 0 {
		return errors.New("no locator (use -locator)")
	}
	if len(c.Etcd) == 0 {
		return errors.New("no etcd endpoint (use -etcd)")
	}
	if c.MaxMappings < 0 || c.MaxMappings > 1<<28 {
		return fmt.Errorf("max mappings %d: want 0 (default) to %d", c.MaxMappings, 1<<28)
	}
	if _, err := c.Files.Config(); err != nil { // reads the files: fail now
		return err
	}
	if len(c.Mapsrv) > 0 && c.KeyFile == "" {
		return errors.New("-mapsrv needs -key-file")
	}
	if c.NotifyListen.IsValid() && c.KeyFile == "" {
		return errors.New("-notify-listen needs -key-file")
	}
	switch c.MissPolicy {
	case "pass", "drop":
	default:
		return fmt.Errorf("miss policy %q: want pass or drop", c.MissPolicy)
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		return fmt.Errorf("log format %q: want text or json", c.LogFormat)
	}
	if c.BPFFS == "" {
		c.BPFFS = filepath.Join("/sys/fs/bpf/ila", c.Node)
	}
	if c.API == "" && c.Role == roleNVE {
		c.API = filepath.Join("/run/ilad", c.Node+".sock")
	}
	if err := c.checkAPI(); err != nil {
		return err
	}
	if c.StateFile == "" && c.Role == roleNVE {
		c.StateFile = filepath.Join("/run/ilad", c.Node+".tasks.json")
	}
	if c.StateFile == "none" {
		c.StateFile = ""
	}
	if c.NetNS != "" && !filepath.IsAbs(c.NetNS) {
		c.NetNS = filepath.Join("/var/run/netns", c.NetNS)
	}
	if !filepath.IsAbs(c.BPFFS) {
		return fmt.Errorf("bpffs pin directory %q: want an absolute path", c.BPFFS)
	}
	c.Config.Router = c.Role == roleRouter
	if err := c.checkBGP(); err != nil {
		return err
	}
	return c.Config.CheckSettings()
}

// checkRouter refuses the NVE settings a router has no use for: a router
// has no locator, uplink, tasks or IPv4 layer and registers nothing with
// mapsrv; its local API (-api, none by default) only reads (GET /v1/stats,
// /v1/datapath: ilactl where).
func (c *config) checkRouter() error {
	if len(c.RouterPorts) == 0 {
		return errors.New("role router: no port to attach the router to (use -ports)")
	}
	for _, p := range c.RouterPorts {
		if len(p) > 15 || strings.ContainsAny(p, "/ \t") {
			return fmt.Errorf("role router: port %q: want an interface name of 1 to 15 characters without '/' or space", p)
		}
	}
	for _, x := range []struct {
		given bool
		what  string
	}{
		{len(c.Locators) > 0, "-locator"},
		{c.Uplink != "", "-uplink"},
		{c.Underlay.IsValid(), "-underlay"},
		{len(c.Mapsrv) > 0, "-mapsrv"},
		{c.KeyFile != "", "-key-file"},
		{c.NotifyListen.IsValid(), "-notify-listen"},
		{c.StateFile != "" && c.StateFile != "none", "-state-file"},
		{len(c.Tasks) > 0, "tasks"},
		{c.APIAdvertise != "", "-api-advertise (it travels in heartbeats)"},
		{c.Mode == locator.ModePull, "-mode pull"},
	} {
		if x.given {
			return fmt.Errorf("role router: %s is an NVE's setting (a router holds the whole table on -ports and attaches no tasks)", x.what)
		}
	}
	return nil
}

// checkAPI checks the local API's security settings (locator.CheckAPIAddr)
// and its advertised URL.
func (c *config) checkAPI() error {
	if (c.APICert == "") != (c.APIKey == "") {
		return errors.New("-api-cert and -api-key go together")
	}
	if c.API != "" {
		if err := locator.CheckAPIAddr(c.API, c.APITokenFile != "", c.APICert != ""); err != nil {
			return err
		}
	} else if c.APITokenFile != "" || c.APICert != "" {
		return errors.New("-api-token-file, -api-cert: no -api to secure")
	}
	if c.APIAdvertise != "" {
		u, err := url.Parse(c.APIAdvertise)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Path != "" && u.Path != "/" || len(c.APIAdvertise) > 255 {
			return fmt.Errorf("-api-advertise %q: want http(s)://HOST:PORT, at most 255 bytes", c.APIAdvertise)
		}
		if c.API == "" || strings.HasPrefix(c.API, "/") || strings.HasPrefix(c.API, "unix:") {
			return fmt.Errorf("-api-advertise %s: the local API is not on TCP (-api HOST:PORT)", c.APIAdvertise)
		}
	}
	if c.APITokenFile != "" {
		if _, err := mapsrv.ReadTokenRoles(c.APITokenFile); err != nil {
			return fmt.Errorf("-api-token-file: %w", err)
		}
	}
	return nil
}
