package testutil

import (
	"bufio"
	"os"
	"regexp"
	"strings"
	"testing"
)

var (
	unitFlag = regexp.MustCompile(`(?:^|\s)--?([a-z0-9][a-z0-9-]*)`)
	unitVar  = regexp.MustCompile(`\$\{([A-Z0-9_]+)\}`)
	helpFlag = regexp.MustCompile(`(?m)^\s+-{1,2}([a-z0-9][a-z0-9-]*)`)
)

// UnitExec returns the flags (without dashes) and the ${VARIABLES} of the
// ExecStart command line of a systemd unit file (continuation lines
// joined).
func UnitExec(t testing.TB, path string) (flags, vars []string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var cmd strings.Builder
	in := false
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "ExecStart=") {
			in = true
			line = strings.TrimPrefix(line, "ExecStart=")
		}
		if !in {
			continue
		}
		cont := strings.HasSuffix(line, `\`)
		cmd.WriteString(" " + strings.TrimSuffix(line, `\`))
		if !cont {
			break
		}
	}
	if cmd.Len() == 0 {
		t.Fatalf("%s: no ExecStart", path)
	}
	for _, m := range unitFlag.FindAllStringSubmatch(cmd.String(), -1) {
		flags = append(flags, m[1])
	}
	for _, m := range unitVar.FindAllStringSubmatch(cmd.String(), -1) {
		vars = append(vars, m[1])
	}
	return flags, vars
}

// EnvFileVars returns the variable names an EnvironmentFile sets.
func EnvFileVars(t testing.TB, path string) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if k, _, ok := strings.Cut(line, "="); ok {
			out[k] = true
		}
	}
	return out
}

// HelpFlags returns the flag names a Go flag package usage text lists.
func HelpFlags(help string) map[string]bool {
	out := map[string]bool{}
	for _, m := range helpFlag.FindAllStringSubmatch(help, -1) {
		out[m[1]] = true
	}
	return out
}

// CheckUnit fails t when the unit's ExecStart uses a flag the binary does
// not define (known: from HelpFlags) or a variable envFile ("" for none)
// does not set.
func CheckUnit(t testing.TB, unit, envFile string, known map[string]bool) {
	t.Helper()
	flags, vars := UnitExec(t, unit)
	if len(known) == 0 {
		t.Fatalf("no flags known to check %s against", unit)
	}
	for _, f := range flags {
		if !known[f] {
			t.Errorf("%s: ExecStart uses --%s, which the binary does not define", unit, f)
		}
	}
	if envFile == "" {
		return
	}
	set := EnvFileVars(t, envFile)
	for _, v := range vars {
		if !set[v] {
			t.Errorf("%s: ExecStart uses ${%s}, which %s does not set", unit, v, envFile)
		}
	}
}
