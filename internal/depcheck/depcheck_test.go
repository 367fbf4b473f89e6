package depcheck

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const mod = "github.com/ilamesh/ilamesh/"

// product are the packages above the address model (and everything below
// their paths): the ground floor, internal/, reaches none of them, not
// even through another package. ila itself (stdlib only) is ground.
var product = []string{mod + "ila/datapath", mod + "mapsrv", mod + "locator", mod + "dnsbridge", mod + "l2compat"}

// orchestrators may import product packages and are imported by no
// product package: the mains, the lab (the whole system deployed into
// namespaces) and the end-to-end tests.
var orchestrators = []string{"cmd/", "deploy/lab", "test"}

// rule: packages matching pkg (a prefix of the path inside the module, "="
// for an exact match) must not import anything matching a deny prefix.
type rule struct {
	pkg  string
	deny []string
	why  string
}

var rules = []rule{
	{"=ila", []string{"github.com/", "golang.org/", "go.etcd.io/", "go.uber.org/", mod}, "ila is the stdlib-only address model"},
	{"ila/datapath", []string{mod + "mapsrv", mod + "locator", mod + "dnsbridge", mod + "l2compat", "go.etcd.io/", "github.com/miekg/"}, "the datapath knows only ila"},
	{"=mapsrv", []string{"go.etcd.io/etcd/server", mod + "locator", mod + "dnsbridge", mod + "l2compat", mod + "ila/datapath"}, "mapsrv core has no etcd import and no peer imports"},
	{"mapsrv/", []string{"go.etcd.io/etcd/server", mod + "locator", mod + "dnsbridge", mod + "l2compat", mod + "ila/datapath"}, "only internal/etcdembed imports the etcd server"},
	{"locator", []string{mod + "mapsrv", mod + "dnsbridge", mod + "l2compat", "go.etcd.io/", "github.com/miekg/"}, "peers never import peers"},
	{"dnsbridge", []string{mod + "mapsrv", mod + "locator", mod + "l2compat", mod + "ila/datapath", "go.etcd.io/"}, "dnsbridge consumes a Source interface"},
	{"l2compat", []string{mod + "mapsrv", mod + "locator", mod + "dnsbridge", mod + "ila/datapath", "go.etcd.io/", "github.com/miekg/"}, "peers never import peers"},
	{"internal", product, "internal/ is the ground floor: it imports no product package"},
}

// stdlibOnly: these packages may import the standard library and, of
// everything else, only the listed packages.
var stdlibOnly = map[string][]string{
	// The registration protocol is public: another NVE implementation
	// imports it without pulling in the mapping service, etcd or anything
	// but the address model.
	"mapsrv/regproto": {mod + "ila"},
	// The API client is linked into ilactl and third-party tools: HTTP
	// and mapsrv's types, no etcd.
	"mapsrv/apiclient": {mod + "ila", mod + "mapsrv"},
}

// owners: a third-party import path prefix may appear only in these
// packages (path prefixes inside the module).
var owners = map[string][]string{
	"github.com/cilium/ebpf":         {"ila/datapath", "cmd/", "test", "internal/testutil"},
	"go.etcd.io/etcd/server":         {"internal/etcdembed", "cmd/", "test"},
	"github.com/miekg/dns":           {"dnsbridge", "cmd/", "test", "bench/"},
	"github.com/mdlayher/ndp":        {"locator/ndemu", "cmd/", "test"},
	"github.com/mdlayher/arp":        {"l2compat", "cmd/", "test"},
	"github.com/vishvananda/netlink": {"locator", "l2compat", "internal/", "ila/datapath", "deploy/lab", "cmd/", "test"},
	// The embedded BGP speaker: GoBGP stays behind locator/bgp's small API.
	"github.com/osrg/gobgp": {"locator/bgp"},
	// The CNI plugin only: the skeleton, result types, netns and veth work.
	"github.com/containernetworking/cni":     {"cmd/ila-cni"},
	"github.com/containernetworking/plugins": {"cmd/ila-cni"},
	// The manifest test only (test imports: decoding into the API types).
	"k8s.io/api":       {"deploy/kubernetes"},
	"sigs.k8s.io/yaml": {"deploy/kubernetes"},

	// QMP client of the lab's QEMU guests and of ilad's commit on resume.
	"github.com/digitalocean/go-qemu": {"internal/qmp", "cmd/", "test"},
	"libvirt.org/go/libvirtxml":       {"cmd/ilactl", "test"},
}

// goList runs go list in the module; a failure fails the test (a check
// that cannot run must not pass).
func goList(t *testing.T, args ...string) []string {
	t.Helper()
	out, err := exec.Command("go", append([]string{"list"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("go list %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.Split(strings.TrimSpace(string(out)), "\n")
}

func TestDependencyDirection(t *testing.T) {
	n := 0
	for _, line := range goList(t, "-f", `{{.ImportPath}} {{join .Imports " "}}`, mod+"...") {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], mod) {
			continue
		}
		n++
		pkg := strings.TrimPrefix(f[0], mod)
		for _, imp := range f[1:] {
			if in(strings.TrimPrefix(imp, mod), orchestrators) && strings.HasPrefix(imp, mod) && !in(pkg, orchestrators) {
				t.Errorf("%s imports %s: only orchestrators (%v) import an orchestrator", pkg, imp, orchestrators)
			}
			for _, r := range rules {
				if !match(pkg, r.pkg) {
					continue
				}
				for _, d := range r.deny {
					if strings.HasPrefix(imp, d) && !(pkg == "ila" && imp == mod+"ila") {
						t.Errorf("%s imports %s: %s", pkg, imp, r.why)
					}
				}
			}
			if allowed, ok := stdlibOnly[pkg]; ok && !stdlib(imp) && !slices.Contains(allowed, imp) {
				t.Errorf("%s imports %s: it may import only the standard library and %v", pkg, imp, allowed)
			}
			for lib, allowed := range owners {
				if !strings.HasPrefix(imp, lib) {
					continue
				}
				ok := false
				for _, a := range allowed {
					if strings.HasPrefix(pkg, a) {
						ok = true
					}
				}
				if !ok {
					t.Errorf("%s imports %s, which belongs to %v", pkg, imp, allowed)
				}
			}
		}
	}
	if n < 3 {
		t.Fatalf("go list saw only %d packages", n)
	}
}

// TestGroundFloor: the dependencies of every package under internal/,
// transitive and with its tests, contain no product package (the check
// anyone can run: go list -deps -test ./internal/... | grep -E
// 'ilamesh/(ila/datapath|mapsrv|locator|dnsbridge|l2compat)' prints
// nothing).
func TestGroundFloor(t *testing.T) {
	n, seen := 0, map[string]bool{}
	for _, line := range goList(t, "-test", "-f", `{{.ImportPath}}|{{join .Deps " "}}`, mod+"internal/...") {
		pkg, deps, ok := strings.Cut(line, "|")
		if !ok {
			t.Fatalf("go list line %q: no separator", line)
		}
		pkg, _, _ = strings.Cut(pkg, " ") // "p [p.test]" -> "p"
		if !strings.HasPrefix(pkg, mod+"internal/") {
			continue
		}
		n++
		for _, d := range strings.Fields(deps) {
			if strings.HasPrefix(d, "[") {
				continue // the "[p.test]" half of a test variant
			}
			for _, p := range product {
				if (d == p || strings.HasPrefix(d, p+"/")) && !seen[pkg+" "+d] {
					seen[pkg+" "+d] = true
					t.Errorf("%s depends on %s: internal/ is the ground floor, below every product package", strings.TrimPrefix(pkg, mod), d)
				}
			}
		}
	}
	if n < 5 {
		t.Fatalf("go list saw only %d packages under internal/", n)
	}
}

// in reports whether pkg (a path inside the module) is one of the path
// prefixes.
func in(pkg string, prefixes []string) bool {
	for _, p := range prefixes {
		if pkg == p || strings.HasPrefix(pkg, strings.TrimSuffix(p, "/")+"/") {
			return true
		}
	}
	return false
}

func match(pkg, pattern string) bool {
	if p, ok := strings.CutPrefix(pattern, "="); ok {
		return pkg == p
	}
	return pkg == pattern || strings.HasPrefix(pkg, pattern+"/") || strings.HasPrefix(pkg, pattern)
}

// stdlib reports whether imp is a standard library package (no dot in its
// first path element).
func stdlib(imp string) bool {
	first, _, _ := strings.Cut(imp, "/")
	return !strings.Contains(first, ".")
}
