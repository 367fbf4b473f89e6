//go:build linux

package lab

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"image/png"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// realisticReport is a report shaped like a real `ilalab demo --nves 5`
// run: 3 s of traffic in six flows (pings every 10 ms, TCP chunks every
// 2 ms), a make-before-break move whose commit and node updates fall
// within a few milliseconds of each other, as they do in the lab.
func realisticReport() *Report {
	t0 := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	at := func(ms float64) time.Time { return t0.Add(time.Duration(ms * float64(time.Millisecond))) }
	flow := func(name string, every float64, lat float64) *FlowStats {
		f := &FlowStats{Name: name, FirstSent: at(-1500), Interval: Duration(time.Duration(every * float64(time.Millisecond)))}
		n := int(3000 / every)
		for i := range n {
			sent := -1500 + float64(i)*every
			recv := sent + lat
			if sent > 60 && sent < 66 {
				recv += 1 // the switch delays a few packets
			}
			f.Arrivals = append(f.Arrivals, Arrival{Seq: i, Sent: at(sent), Recv: at(recv)})
		}
		f.Sent = n
		f.summarise(at(1500))
		return f
	}
	r := &Report{
		Started: at(-1600), Lab: "ilalab", Mode: "ila",
		Move: &MoveResult{Task: "t5", From: "nve5", To: "nve2", Mode: MoveHot, Via: ViaDual,
			Start: at(0), LinkMoved: at(9.8), Committed: at(63.1), Attached: at(62.9), Done: at(115.4)},
		Flows: []*FlowStats{
			flow("ping t1 -> fd00:5151::2000:0:0:5", 10, 0.21),
			flow("tcp t2 -> t5", 2, 0.35),
			flow("ping t3 -> fd00:5151::2000:0:0:5", 10, 0.19),
			flow("ping t4 -> fd00:5151::2000:0:0:5", 10, 0.23),
			flow("tcp t3 -> t5", 2, 0.31),
			flow("ping t1 -> fd00:5151::4000:0:a00:6", 10, 0.4),
		},
		Convergence: []NodeUpdate{
			{Node: "router", Seen: true, Applied: at(65.1)},
			{Node: "nve1", Seen: true, Applied: at(66.0)},
			{Node: "nve2", Seen: true, Applied: at(61.8)},
			{Node: "nve3", Seen: true, Applied: at(65.3)},
			{Node: "nve4", Seen: true, Applied: at(64.9)},
			{Node: "nve5", Seen: true, Applied: at(64.8)},
		},
		DNSChanged: true,
	}
	r.judge()
	return r
}

// carryReport is a move that lost packets (the link carried over), with a
// long FAIL verdict and a node that applied the move 70 ms after the rest.
func carryReport() *Report {
	r := realisticReport()
	m := r.Move
	m.Via = ViaCarry
	m.LinkMoved = m.Start.Add(71 * time.Millisecond)
	m.Committed = m.Start.Add(3200 * time.Microsecond)
	m.Attached = m.Start.Add(140 * time.Millisecond)
	m.Done = m.Start.Add(141 * time.Millisecond)
	for i := range r.Convergence {
		r.Convergence[i].Applied = r.Convergence[i].Applied.Add(-60 * time.Millisecond)
	}
	r.Convergence[2].Applied = m.Start.Add(139 * time.Millisecond) // nve2 attaches the port
	for _, f := range r.Flows {
		kept := f.Arrivals[:0]
		for _, a := range f.Arrivals {
			if d := a.Sent.Sub(m.Start); d < 10*time.Millisecond || d > 95*time.Millisecond {
				kept = append(kept, a)
			}
		}
		f.Arrivals = kept
		f.summarise(m.Start.Add(1500 * time.Millisecond))
	}
	r.Convergence = append(r.Convergence, NodeUpdate{Node: "nve6", Note: "no line naming fd00:5151::2000:0:0:5 and moved away"})
	r.Problems = nil
	r.judge()
	return r
}

// smallReport is one flow and two marks 2 ms apart.
func smallReport() *Report {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	f := &FlowStats{Name: "ping t1 -> fd00:5151::2000:0:0:3", Sent: 50, FirstSent: ms(-200)}
	for i := range 50 {
		f.Arrivals = append(f.Arrivals, Arrival{Seq: i, Sent: ms(-200 + 10*i), Recv: ms(-200 + 10*i + 1)})
	}
	f.summarise(ms(290))
	r := &Report{
		Move:        &MoveResult{Task: "t3", From: "nve3", To: "nve2", Start: ms(0), LinkMoved: ms(1), Committed: ms(3), Done: ms(4)},
		Flows:       []*FlowStats{f},
		Convergence: []NodeUpdate{{Node: "nve1", Seen: true, Applied: ms(3)}},
	}
	r.judge()
	return r
}

func TestTimelineLegible(t *testing.T) {
	tests := []struct {
		name string
		r    *Report
	}{
		{"realistic dual move, six flows", realisticReport()},
		{"carried link, lost packets, long verdict", carryReport()},
		{"one flow, marks 1 ms apart", smallReport()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := tc.r.Timeline(&b); err != nil {
				t.Fatal(err)
			}
			doc := parseSVG(t, b.Bytes())
			for _, p := range doc.overlaps() {
				t.Error(p)
			}
			for _, p := range doc.unlabelledMarks() {
				t.Error(p)
			}
			if len(doc.texts) < 10 {
				t.Errorf("only %d texts", len(doc.texts))
			}
			dir := t.ArtifactDir()
			svg := filepath.Join(dir, "timeline.svg")
			if err := os.WriteFile(svg, b.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			renderPNG(t, svg, filepath.Join(dir, "timeline.png"))
		})
	}
}

func TestTimelineRefuses(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, r := range []*Report{
		{},
		{Move: &MoveResult{Task: "t3"}},
		{Move: &MoveResult{Task: "t3", Start: t0, Done: t0.Add(-time.Second)}},
	} {
		if err := r.Timeline(io.Discard); err == nil {
			t.Errorf("Timeline of %+v: no error", r.Move)
		}
	}
}

// renderPNG renders the SVG as the README suggests (1400 px wide) and
// checks that the renderer took it.
func renderPNG(t *testing.T, svg, out string) {
	t.Helper()
	if _, err := exec.LookPath("rsvg-convert"); err != nil {
		t.Log("rsvg-convert not found (Debian librsvg2-bin, test/run.sh installs it): not rendering the timeline")
		return
	}
	if b, err := exec.Command("rsvg-convert", "-w", "1400", svg, "-o", out).CombinedOutput(); err != nil {
		t.Fatalf("rsvg-convert: %v\n%s", err, b)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("rendered timeline: %v", err)
	}
	if w := img.Bounds().Dx(); w != 1400 {
		t.Errorf("rendered width %d, want 1400", w)
	}
}

// box is an axis-aligned rectangle in SVG user units.
type box struct{ x0, y0, x1, y1 float64 }

func (a box) overlaps(b box) bool { return a.x0 < b.x1 && b.x0 < a.x1 && a.y0 < b.y1 && b.y0 < a.y1 }

func (a box) String() string { return fmt.Sprintf("[%.0f,%.0f]-[%.0f,%.0f]", a.x0, a.y0, a.x1, a.y1) }

type svgText struct {
	s     string
	class string
	fill  string
	box   box
}

type svgLine struct {
	x1, y1, x2, y2 float64
	class, stroke  string
}

type svgDoc struct {
	w, h  float64
	texts []svgText
	lines []svgLine
	rects []box
}

// The estimate of a text's extent is deliberately generous: DejaVu Sans
// (rsvg-convert's sans-serif here) advances about 0.6 em per character on
// average (digits 0.64, '+' and 'm' wider, 'i' and '.' narrower); we take
// 0.7 em per character, 0.85 em above the baseline and 0.25 em below.
const (
	estAdvance = 0.7
	estAscent  = 0.85
	estDescent = 0.25
)

func parseSVG(t *testing.T, b []byte) *svgDoc {
	t.Helper()
	doc := &svgDoc{}
	dec := xml.NewDecoder(bytes.NewReader(b))
	attrs := func(e xml.StartElement) map[string]string {
		m := map[string]string{}
		for _, a := range e.Attr {
			m[a.Name.Local] = a.Value
		}
		return m
	}
	num := func(m map[string]string, k string) float64 {
		v, err := strconv.ParseFloat(m[k], 64)
		if err != nil {
			t.Fatalf("attribute %s=%q: %v", k, m[k], err)
		}
		return v
	}
	rootSize := 0.0
	var cur map[string]string
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("timeline is not well-formed XML: %v", err)
		}
		switch e := tok.(type) {
		case xml.StartElement:
			a := attrs(e)
			switch e.Name.Local {
			case "svg":
				doc.w, doc.h, rootSize = num(a, "width"), num(a, "height"), num(a, "font-size")
			case "text":
				cur = a
			case "line":
				doc.lines = append(doc.lines, svgLine{num(a, "x1"), num(a, "y1"), num(a, "x2"), num(a, "y2"), a["class"], a["stroke"]})
			case "rect":
				if a["width"] == "100%" {
					continue // the background
				}
				x, y := num(a, "x"), num(a, "y")
				doc.rects = append(doc.rects, box{x, y, x + num(a, "width"), y + num(a, "height")})
			case "g", "title":
			default:
				t.Errorf("unexpected element <%s>", e.Name.Local)
			}
		case xml.CharData:
			if cur == nil || strings.TrimSpace(string(e)) == "" {
				continue
			}
			size := rootSize
			if _, ok := cur["font-size"]; ok {
				size = num(cur, "font-size")
			}
			s := string(e)
			w := float64(utf8.RuneCountInString(s)) * size * estAdvance
			x, y := num(cur, "x"), num(cur, "y")
			switch cur["text-anchor"] {
			case "middle":
				x -= w / 2
			case "end":
				x -= w
			}
			doc.texts = append(doc.texts, svgText{s: s, class: cur["class"], fill: cur["fill"], box: box{x, y - estAscent*size, x + w, y + estDescent*size}})
		case xml.EndElement:
			if e.Name.Local == "text" {
				cur = nil
			}
		}
	}
	return doc
}

// overlaps lists every text box that leaves the canvas, overlaps another
// text, a bar or a line.
func (d *svgDoc) overlaps() []string {
	var out []string
	canvas := box{0, 0, d.w, d.h}
	for i, a := range d.texts {
		if a.box.x0 < canvas.x0 || a.box.y0 < canvas.y0 || a.box.x1 > canvas.x1 || a.box.y1 > canvas.y1 {
			out = append(out, fmt.Sprintf("text %q %v leaves the %gx%g canvas", a.s, a.box, d.w, d.h))
		}
		for _, b := range d.texts[i+1:] {
			if a.box.overlaps(b.box) {
				out = append(out, fmt.Sprintf("text %q %v overlaps text %q %v", a.s, a.box, b.s, b.box))
			}
		}
		for _, r := range d.rects {
			if a.box.overlaps(r) {
				out = append(out, fmt.Sprintf("text %q %v overlaps a rectangle %v", a.s, a.box, r))
			}
		}
		for _, l := range d.lines {
			if segmentHits(l, a.box) {
				out = append(out, fmt.Sprintf("text %q %v is crossed by a line (%.1f,%.1f)-(%.1f,%.1f)", a.s, a.box, l.x1, l.y1, l.x2, l.y2))
			}
		}
	}
	return out
}

// unlabelledMarks checks that every event label (class "mark-label") sits
// right beside the end of a dashed event line of its own colour: the line
// ends level with the label and at most 6 units left of it.
func (d *svgDoc) unlabelledMarks() []string {
	var out []string
	n := 0
	for _, tx := range d.texts {
		if tx.class != "mark-label" {
			continue
		}
		n++
		ok := false
		for _, l := range d.lines {
			if l.class != "mark" || l.stroke != tx.fill || l.x1 != l.x2 {
				continue
			}
			top := min(l.y1, l.y2)
			if l.x1 <= tx.box.x0 && tx.box.x0-l.x1 <= 6 && top >= tx.box.y0 && top <= tx.box.y1 {
				ok = true
			}
		}
		if !ok {
			out = append(out, fmt.Sprintf("event label %q %v: no %s line ends beside it", tx.s, tx.box, tx.fill))
		}
	}
	if n == 0 {
		out = append(out, "no event labels (class mark-label)")
	}
	return out
}

// segmentHits reports whether the line segment l passes through b (Liang-
// Barsky clipping), with half a unit of stroke on either side.
func segmentHits(l svgLine, b box) bool {
	b = box{b.x0 - 0.5, b.y0 - 0.5, b.x1 + 0.5, b.y1 + 0.5}
	dx, dy := l.x2-l.x1, l.y2-l.y1
	t0, t1 := 0.0, 1.0
	for _, pq := range [][2]float64{{-dx, l.x1 - b.x0}, {dx, b.x1 - l.x1}, {-dy, l.y1 - b.y0}, {dy, b.y1 - l.y1}} {
		p, q := pq[0], pq[1]
		if p == 0 {
			if q < 0 {
				return false
			}
			continue
		}
		r := q / p
		if p < 0 {
			t0 = max(t0, r)
		} else {
			t1 = min(t1, r)
		}
		if t0 > t1 {
			return false
		}
	}
	return true
}
