package kubernetes_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"
)

// manifests are the decoded objects of every *.yaml here.
type manifests struct {
	configMaps map[string]corev1.ConfigMap
	secrets    map[string]corev1.Secret
	services   []corev1.Service
	pods       map[string]corev1.PodTemplateSpec // workload kind/name -> pod template
	accounts   map[string]bool
}

// decodeStrict decodes JSON into v, refusing fields v does not have (a
// misspelt field would otherwise be dropped silently by the API server).
func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

func load(t *testing.T) *manifests {
	t.Helper()
	files, err := filepath.Glob("*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests: %v", err)
	}
	m := &manifests{configMaps: map[string]corev1.ConfigMap{}, secrets: map[string]corev1.Secret{}, pods: map[string]corev1.PodTemplateSpec{}, accounts: map[string]bool{}}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range regexp.MustCompile(`(?m)^---$`).Split(string(b), -1) {
			js, err := yaml.YAMLToJSON([]byte(doc))
			if err != nil {
				t.Fatalf("%s document %d: %v", f, i+1, err)
			}
			var meta struct {
				APIVersion, Kind string
			}
			if err := json.Unmarshal(js, &meta); err != nil || meta.Kind == "" {
				if strings.TrimSpace(string(js)) == "null" {
					continue // comments only
				}
				t.Fatalf("%s document %d: no kind (%v)", f, i+1, err)
			}
			where := fmt.Sprintf("%s: %s", f, meta.Kind)
			var obj interface{ GetNamespace() string }
			switch meta.APIVersion + " " + meta.Kind {
			case "v1 Namespace":
				obj = &corev1.Namespace{}
			case "v1 ServiceAccount":
				sa := &corev1.ServiceAccount{}
				obj = sa
				defer func() { m.accounts[sa.Name] = true }()
			case "rbac.authorization.k8s.io/v1 Role":
				obj = &rbacv1.Role{}
			case "v1 Secret":
				obj = &corev1.Secret{}
			case "v1 ConfigMap":
				obj = &corev1.ConfigMap{}
			case "v1 Service":
				obj = &corev1.Service{}
			case "apps/v1 Deployment":
				obj = &appsv1.Deployment{}
			case "apps/v1 StatefulSet":
				obj = &appsv1.StatefulSet{}
			case "apps/v1 DaemonSet":
				obj = &appsv1.DaemonSet{}
			default:
				t.Fatalf("%s: unexpected apiVersion/kind %s %s", where, meta.APIVersion, meta.Kind)
			}
			if err := decodeStrict(js, obj); err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			if ns := obj.GetNamespace(); meta.Kind != "Namespace" && ns != "ilamesh" {
				t.Errorf("%s: namespace %q, want ilamesh", where, ns)
			}
			switch o := obj.(type) {
			case *corev1.Secret:
				m.secrets[o.Name] = *o
			case *corev1.ConfigMap:
				m.configMaps[o.Name] = *o
			case *corev1.Service:
				m.services = append(m.services, *o)
			case *appsv1.Deployment:
				m.pods["Deployment/"+o.Name] = o.Spec.Template
				checkSelector(t, where, o.Spec.Selector.MatchLabels, o.Spec.Template.Labels)
			case *appsv1.StatefulSet:
				m.pods["StatefulSet/"+o.Name] = o.Spec.Template
				checkSelector(t, where, o.Spec.Selector.MatchLabels, o.Spec.Template.Labels)
			case *appsv1.DaemonSet:
				m.pods["DaemonSet/"+o.Name] = o.Spec.Template
				checkSelector(t, where, o.Spec.Selector.MatchLabels, o.Spec.Template.Labels)
			}
		}
	}
	return m
}

func checkSelector(t *testing.T, where string, sel, labels map[string]string) {
	t.Helper()
	if len(sel) == 0 {
		t.Errorf("%s: empty selector", where)
	}
	for k, v := range sel {
		if labels[k] != v {
			t.Errorf("%s: selector %s=%s does not match the pod labels %v", where, k, v, labels)
		}
	}
}

// binaries builds the components and returns each one's flags (from -h).
func binaries(t *testing.T) (dir string, flags map[string]map[string]bool) {
	t.Helper()
	dir = t.TempDir()
	cmd := exec.Command("go", "build", "-o", dir+"/", "./cmd/ilad", "./cmd/mapsrv", "./cmd/dnsbridge", "./cmd/ila-cni")
	cmd.Dir = "../.."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	helpFlag := regexp.MustCompile(`(?m)^\s+-{1,2}([a-z0-9][a-z0-9-]*)`)
	flags = map[string]map[string]bool{}
	for _, b := range []string{"ilad", "mapsrv", "dnsbridge", "ila-cni install"} {
		f := strings.Fields(b)
		out, _ := exec.Command(filepath.Join(dir, f[0]), append(f[1:], "-h")...).CombinedOutput()
		set := map[string]bool{}
		for _, m := range helpFlag.FindAllStringSubmatch(string(out), -1) {
			set[m[1]] = true
		}
		if len(set) < 3 {
			t.Fatalf("%s -h: %d flags found in\n%s", b, len(set), out)
		}
		flags[b] = set
	}
	return dir, flags
}

// TestManifests decodes every manifest into its k8s.io/api type and checks
// each container against its binary: every flag exists, every file a flag
// names is inside one of the container's mounts and, in a Secret or
// ConfigMap volume, is one of its keys; every $(VAR) is in env; every
// mount has a volume, every volume a ConfigMap or Secret defined here;
// every Service selects a workload and targets a port it has.
func TestManifests(t *testing.T) {
	m := load(t)
	dir, flags := binaries(t)
	for _, want := range []string{"DaemonSet/ilad", "Deployment/mapsrv", "Deployment/dnsbridge"} {
		if _, ok := m.pods[want]; !ok {
			t.Errorf("no %s", want)
		}
	}
	varRef := regexp.MustCompile(`\$\(([A-Z_][A-Z0-9_]*)\)`)
	for wl, pod := range m.pods {
		if sa := pod.Spec.ServiceAccountName; !m.accounts[sa] {
			t.Errorf("%s: service account %q not defined", wl, sa)
		}
		vols := map[string]corev1.Volume{}
		for _, v := range pod.Spec.Volumes {
			vols[v.Name] = v
			switch {
			case v.ConfigMap != nil:
				if _, ok := m.configMaps[v.ConfigMap.Name]; !ok {
					t.Errorf("%s: volume %s: ConfigMap %s not defined", wl, v.Name, v.ConfigMap.Name)
				}
			case v.Secret != nil:
				if _, ok := m.secrets[v.Secret.SecretName]; !ok {
					t.Errorf("%s: volume %s: Secret %s not defined", wl, v.Name, v.Secret.SecretName)
				}
			case v.HostPath != nil:
			default:
				t.Errorf("%s: volume %s: only hostPath, ConfigMap and Secret volumes are expected", wl, v.Name)
			}
		}
		for _, c := range slices.Concat(pod.Spec.InitContainers, pod.Spec.Containers) {
			where := wl + " container " + c.Name
			if len(c.Command) == 0 {
				t.Errorf("%s: no command", where)
				continue
			}
			bin := filepath.Base(c.Command[0])
			args := slices.Concat(c.Command[1:], c.Args)
			if bin == "ila-cni" && len(args) > 0 && args[0] == "install" {
				bin, args = "ila-cni install", args[1:]
			}
			known, ok := flags[bin]
			if !ok {
				t.Errorf("%s: command %s is not an ilamesh binary", where, c.Command[0])
				continue
			}
			env := map[string]bool{}
			for _, e := range c.Env {
				env[e.Name] = true
			}
			for _, a := range args {
				name, val, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
				if !strings.HasPrefix(a, "-") || !known[name] {
					t.Errorf("%s: argument %q: not a flag of %s (want -flag=value)", where, a, bin)
				}
				for _, r := range varRef.FindAllStringSubmatch(val, -1) {
					if !env[r[1]] {
						t.Errorf("%s: %s uses $(%s), which its env does not set", where, a, r[1])
					}
				}
				if strings.HasPrefix(val, "/") {
					checkPath(t, where, a, val, c, vols, m)
				}
			}
			for _, vm := range c.VolumeMounts {
				if _, ok := vols[vm.Name]; !ok {
					t.Errorf("%s: mount %s has no volume", where, vm.Name)
				}
			}
		}
	}
	for _, s := range m.services {
		found := false
		for wl, pod := range m.pods {
			match := len(s.Spec.Selector) > 0
			for k, v := range s.Spec.Selector {
				match = match && pod.Labels[k] == v
			}
			if !match {
				continue
			}
			found = true
			for _, p := range s.Spec.Ports {
				if !hasPort(pod, p.TargetPort.String(), p.Protocol) {
					t.Errorf("Service %s port %s: %s has no container port %s/%s", s.Name, p.Name, wl, p.TargetPort.String(), p.Protocol)
				}
			}
		}
		if !found {
			t.Errorf("Service %s selects no workload", s.Name)
		}
	}
	checkCNIConfig(t, m, dir)
	checkNodeConfigs(t, m)
}

func hasPort(pod corev1.PodTemplateSpec, name string, proto corev1.Protocol) bool {
	for _, c := range pod.Spec.Containers {
		for _, p := range c.Ports {
			if (p.Name == name || fmt.Sprint(p.ContainerPort) == name) && p.Protocol == proto {
				return true
			}
		}
	}
	return false
}

// checkPath: a file or directory a flag names is under one of the
// container's mounts; in a ConfigMap or Secret volume it is one of the
// object's keys.
func checkPath(t *testing.T, where, arg, path string, c corev1.Container, vols map[string]corev1.Volume, m *manifests) {
	t.Helper()
	var best *corev1.VolumeMount
	for i, vm := range c.VolumeMounts {
		if (path == vm.MountPath || strings.HasPrefix(path, vm.MountPath+"/")) && (best == nil || len(vm.MountPath) > len(best.MountPath)) {
			best = &c.VolumeMounts[i]
		}
	}
	if best == nil {
		t.Errorf("%s: %s: %s is on no volume mount", where, arg, path)
		return
	}
	key := strings.TrimPrefix(strings.TrimPrefix(path, best.MountPath), "/")
	v := vols[best.Name]
	var keys []string
	switch {
	case v.ConfigMap != nil:
		for k := range m.configMaps[v.ConfigMap.Name].Data {
			keys = append(keys, k)
		}
	case v.Secret != nil:
		s := m.secrets[v.Secret.SecretName]
		for k := range s.StringData {
			keys = append(keys, k)
		}
		for k := range s.Data {
			keys = append(keys, k)
		}
	default:
		return
	}
	pattern := "^" + regexp.MustCompile(`\\\$\\\([A-Z_]+\\\)`).ReplaceAllString(regexp.QuoteMeta(key), `[^/]+`) + "$"
	for _, k := range keys {
		if ok, _ := regexp.MatchString(pattern, k); ok {
			return
		}
	}
	t.Errorf("%s: %s: %s is not a key of volume %s (keys %v)", where, arg, key, best.Name, keys)
}

// checkCNIConfig: the ConfigMap's network config is 10-ila.conflist, and
// ila-cni's own installer accepts it (it parses every ila-cni entry);
// its mapsrv URL and ilad socket are those of the Service and DaemonSet.
func checkCNIConfig(t *testing.T, m *manifests, bin string) {
	t.Helper()
	file, err := os.ReadFile("10-ila.conflist")
	if err != nil {
		t.Fatal(err)
	}
	if got := m.configMaps["ila-cni"].Data["10-ila.conflist"]; got != string(file) {
		t.Errorf("ConfigMap ila-cni's 10-ila.conflist differs from the file 10-ila.conflist")
	}
	tmp := t.TempDir()
	out, err := exec.Command(filepath.Join(bin, "ila-cni"), "install", "-bin-dir", filepath.Join(tmp, "bin"), "-conf", "10-ila.conflist", "-conf-dir", filepath.Join(tmp, "net.d")).CombinedOutput()
	if err != nil {
		t.Errorf("ila-cni install -conf 10-ila.conflist: %v: %s", err, out)
	}
	var list struct {
		Plugins []struct {
			IladSocket string `json:"ilad_socket"`
			Mapsrv     struct {
				URL       string `json:"url"`
				TokenFile string `json:"token_file"`
			} `json:"mapsrv"`
		} `json:"plugins"`
	}
	if err := json.Unmarshal(file, &list); err != nil || len(list.Plugins) != 1 {
		t.Fatalf("10-ila.conflist: %v", err)
	}
	p := list.Plugins[0]
	var clusterIP string
	for _, s := range m.services {
		if s.Name == "mapsrv" {
			clusterIP = s.Spec.ClusterIP
		}
	}
	ilad := m.pods["DaemonSet/ilad"].Spec
	args := strings.Join(slices.Concat(ilad.Containers[0].Args, ilad.InitContainers[0].Args), " ")
	for _, want := range []struct{ what, in, sub string }{
		{"mapsrv url", p.Mapsrv.URL, "[" + clusterIP + "]:"},
		{"ilad --mapsrv", args, "--mapsrv=[" + clusterIP + "]:"},
		{"ilad --api", args, "--api=" + p.IladSocket},
		{"install -token-dir", args, "-token-dir=/host" + filepath.Dir(p.Mapsrv.TokenFile)},
	} {
		if clusterIP == "" || !strings.Contains(want.in, want.sub) {
			t.Errorf("%s: %q does not contain %q (mapsrv's cluster IP, the plugin's ilad socket and token)", want.what, want.in, want.sub)
		}
	}
}

// checkNodeConfigs: every per-node ilad config decodes as JSON and uses
// only fields of the sample deploy/config/ilad.json (which ilad's own
// test reads strictly).
func checkNodeConfigs(t *testing.T, m *manifests) {
	t.Helper()
	b, err := os.ReadFile("../config/ilad.json")
	if err != nil {
		t.Fatal(err)
	}
	var sample map[string]any
	if err := json.Unmarshal(b, &sample); err != nil {
		t.Fatal(err)
	}
	nodes := m.configMaps["ilad-nodes"].Data
	if len(nodes) == 0 {
		t.Fatal("ConfigMap ilad-nodes: no node")
	}
	for name, js := range nodes {
		var c map[string]any
		if err := json.Unmarshal([]byte(js), &c); err != nil {
			t.Errorf("ilad-nodes %s: %v", name, err)
			continue
		}
		for k := range c {
			if _, ok := sample[k]; !ok {
				t.Errorf("ilad-nodes %s: field %q is not an ilad config field", name, k)
			}
		}
		if _, ok := c["locators"]; !ok {
			t.Errorf("ilad-nodes %s: no locators", name)
		}
	}
}
