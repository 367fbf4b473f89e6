package lab

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

func esc(s string) string {
	var b bytes.Buffer
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

// Text extents are estimated, not measured: charAdvance is an upper bound
// of the average advance per character of the sans-serif fonts renderers
// pick (DejaVu Sans averages about 0.6 em), so that estimated boxes contain
// the rendered text and the layout keeps them apart.
const (
	charAdvance = 0.7  // em per character
	ascent      = 0.85 // em above the baseline
	descent     = 0.25 // em below it
)

func textWidth(s string, size float64) float64 {
	return float64(utf8.RuneCountInString(s)) * size * charAdvance
}

// svgWriter writes SVG elements; coordinates are user units (pixels at the
// SVG's own size).
type svgWriter struct{ b bytes.Buffer }

func (d *svgWriter) text(x, y, size float64, fill, anchor, class, s string) {
	fmt.Fprintf(&d.b, `<text x="%.1f" y="%.1f"`, x, y)
	if size != fontSize {
		fmt.Fprintf(&d.b, ` font-size="%g"`, size)
	}
	if fill != "" {
		fmt.Fprintf(&d.b, ` fill="%s"`, fill)
	}
	if anchor != "" {
		fmt.Fprintf(&d.b, ` text-anchor="%s"`, anchor)
	}
	if class != "" {
		fmt.Fprintf(&d.b, ` class="%s"`, class)
	}
	fmt.Fprintf(&d.b, ">%s</text>\n", esc(s))
}

func (d *svgWriter) line(x1, y1, x2, y2 float64, stroke string, dashed bool, class string) {
	fmt.Fprintf(&d.b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s"`, x1, y1, x2, y2, stroke)
	if dashed {
		d.b.WriteString(` stroke-dasharray="4,3"`)
	}
	if class != "" {
		fmt.Fprintf(&d.b, ` class="%s"`, class)
	}
	d.b.WriteString("/>\n")
}

func (d *svgWriter) rect(x, y, w, h float64, fill, class string) {
	fmt.Fprintf(&d.b, `<rect x="%.2f" y="%.2f" width="%.2f" height="%.2f" fill="%s" class="%s"/>`+"\n", x, y, w, h, fill, class)
}

const (
	fontSize  = 12.0 // the document's default
	smallSize = 10.5
	margin    = 10.0
	plotW     = 1000.0
	laneH     = 56.0 // one flow's lane: three label lines, bars beside them
	rowH      = 16.0 // one event label row in the zoomed panel
	axisH     = 26.0
)

// mark is an event drawn as a dashed line.
type mark struct {
	at    time.Time
	label string
	color string
}

// window maps a time span onto the plot's width.
type window struct {
	from, to time.Time
	left     float64
}

func (w window) x(t time.Time) float64 {
	return w.left + float64(t.Sub(w.from))/float64(w.to.Sub(w.from))*plotW
}

func (w window) has(t time.Time) bool { return !t.Before(w.from) && !t.After(w.to) }

// Timeline draws packets per millisecond of every flow (by arrival time)
// around the move, with the link move, the commit and each node's update
// marked, as a hand-written SVG in two panels: the move with 150 ms before
// and 200 ms after it, and a zoomed view of the few milliseconds where
// the events happen, each event named beside its own line. Flow names and
// figures have their own column left of the plots; event labels step down
// one row each in time order, so no line crosses a label.
func (r *Report) Timeline(w io.Writer) error {
	if r.Move == nil {
		return fmt.Errorf("timeline: no move in the report")
	}
	m := r.Move
	if m.Start.IsZero() || m.Done.Before(m.Start) {
		return fmt.Errorf("timeline: move of %s has no start, or ends (%v) before it starts (%v)", m.Task, m.Done, m.Start)
	}
	over := window{from: m.Start.Add(-150 * time.Millisecond), to: m.Done.Add(200 * time.Millisecond)}
	for _, c := range r.Convergence {
		if c.Seen && c.Applied.Add(100*time.Millisecond).After(over.to) {
			over.to = c.Applied.Add(100 * time.Millisecond)
		}
	}
	if over.to.Sub(over.from) > 3*time.Second {
		over.to = over.from.Add(3 * time.Second)
	}
	marks := []mark{{m.Start, "move start", "#777"}, {m.LinkMoved, "link moved", "#06c"}, {m.Committed, "commit", "#c00"}}
	if v := r.VM; v != nil {
		marks[1].label = "destination prepared"
		marks = append(marks, mark{v.GuestStopped, "guest stopped", "#609"}, mark{v.GuestResumed, "guest resumed", "#609"}, mark{v.FirstFrame, "first guest frame", "#06c"})
	}
	for _, c := range r.Convergence {
		if c.Seen {
			marks = append(marks, mark{c.Applied, c.Node + " updated", "#b60"})
		}
	}
	marks = slices.DeleteFunc(marks, func(mk mark) bool { return mk.at.IsZero() || !over.has(mk.at) })
	slices.SortStableFunc(marks, func(a, b mark) int { return a.at.Compare(b.at) })
	zoom := zoomWindow(marks, over)

	// The label column is as wide as the longest flow name or figure.
	stats := make([]string, len(r.Flows))
	colW := 150.0
	for i, f := range r.Flows {
		stats[i] = fmt.Sprintf("lost %d/%d, longest gap %v", f.Lost, f.Sent, time.Duration(f.LongestGap).Round(100*time.Microsecond))
		colW = max(colW, textWidth(f.Name, fontSize), textWidth(stats[i], smallSize))
	}
	left := math.Ceil(margin + colW + 14)
	over.left, zoom.left = left, left
	labels := make([]string, len(marks))
	width := left + plotW + 50
	for i, mk := range marks {
		labels[i] = fmt.Sprintf("%s (%+.1fms)", mk.label, float64(mk.at.Sub(m.Start))/1e6)
		width = max(width, zoom.x(mk.at)+4+textWidth(labels[i], fontSize)+margin)
	}
	width = math.Ceil(width)

	var d svgWriter
	var body svgWriter
	y := 24.0
	body.text(margin, y, 15, "", "", "", fmt.Sprintf("Hot move of %s from %s to %s: packets per ms (arrivals)", m.Task, m.From, m.To))
	for _, ln := range wrap(r.Verdict, width-2*margin, fontSize) {
		y += 17
		body.text(margin, y, fontSize, "#555", "", "", ln)
	}

	// Panel 1: the move and its surroundings.
	y += 30
	body.text(margin, y, 13, "", "", "", fmt.Sprintf("Around the move: %s to %s from its start (shaded: zoomed below)", signedMS(over.from.Sub(m.Start)), signedMS(over.to.Sub(m.Start))))
	y += 10
	lanesTop := y
	body.rect(over.x(zoom.from), lanesTop, over.x(zoom.to)-over.x(zoom.from), laneH*float64(len(r.Flows)), "#eef3fb", "band")
	peaks := make([]int, len(r.Flows))
	for i, f := range r.Flows {
		top := lanesTop + laneH*float64(i)
		body.text(margin, top+17, fontSize, "", "", "", f.Name)
		body.text(margin, top+32, smallSize, "#555", "", "", stats[i])
		peaks[i] = flowBars(&body, f, over, top, 0)
		body.text(margin, top+46, smallSize, "#555", "", "", fmt.Sprintf("full bar = %d/ms", peaks[i]))
	}
	lanesBottom := lanesTop + laneH*float64(len(r.Flows))
	for _, mk := range marks {
		xx := over.x(mk.at)
		body.line(xx, lanesTop, xx, lanesBottom, mk.color, true, "mark")
	}
	y = axis(&body, over, m.Start, lanesBottom)

	// Panel 2: zoomed; each event's line ends beside its label, one row
	// per event, earliest on top.
	y += 28
	body.text(margin, y, 13, "", "", "", fmt.Sprintf("Zoomed: %s to %s, each event named beside its line", signedMS(zoom.from.Sub(m.Start)), signedMS(zoom.to.Sub(m.Start))))
	y += 10
	rowsTop := y
	lanesTop = rowsTop + rowH*float64(len(marks)) + 6
	lanesBottom = lanesTop + laneH*float64(len(r.Flows))
	for i, f := range r.Flows {
		top := lanesTop + laneH*float64(i)
		body.text(margin, top+17, fontSize, "", "", "", f.Name)
		flowBars(&body, f, zoom, top, peaks[i])
	}
	for i, mk := range marks {
		base := rowsTop + rowH*float64(i+1) - 3
		xx := zoom.x(mk.at)
		body.line(xx, base-fontSize*0.6, xx, lanesBottom, mk.color, true, "mark")
		body.text(xx+4, base, fontSize, mk.color, "", "mark-label", labels[i])
	}
	y = axis(&body, zoom, m.Start, lanesBottom)

	height := math.Ceil(y + margin)
	fmt.Fprintf(&d.b, `<svg xmlns="http://www.w3.org/2000/svg" width="%g" height="%g" font-family="sans-serif" font-size="%g">`+"\n", width, height, fontSize)
	d.b.WriteString(`<rect width="100%" height="100%" fill="white"/>` + "\n")
	d.b.Write(body.b.Bytes())
	d.b.WriteString("</svg>\n")
	_, err := w.Write(d.b.Bytes())
	return err
}

// zoomWindow spans the marks with some room on either side, at least
// 100 ms (±50 ms around them) and within over.
func zoomWindow(marks []mark, over window) window {
	if len(marks) == 0 {
		return over
	}
	lo, hi := marks[0].at, marks[len(marks)-1].at
	pad := max(10*time.Millisecond, hi.Sub(lo)/6)
	z := window{from: lo.Add(-pad), to: hi.Add(pad)}
	if span := z.to.Sub(z.from); span < 100*time.Millisecond {
		grow := (100*time.Millisecond - span) / 2
		z.from, z.to = z.from.Add(-grow), z.to.Add(grow)
	}
	if z.from.Before(over.from) {
		z.from = over.from
	}
	if z.to.After(over.to) {
		z.to = over.to
	}
	return z
}

// flowBars draws f's arrivals per millisecond in win as bars in the lane
// starting at top, scaled so that peak (or, if 0, the busiest millisecond
// in win) fills the lane, and returns the scale used.
func flowBars(d *svgWriter, f *FlowStats, win window, top float64, peak int) int {
	ms := int(win.to.Sub(win.from)/time.Millisecond) + 1
	bins := make([]int, ms)
	for _, a := range f.Arrivals {
		if !win.has(a.Recv) {
			continue
		}
		if k := int(a.Recv.Sub(win.from) / time.Millisecond); k < ms {
			bins[k]++
		}
	}
	if peak == 0 {
		peak = max(1, slices.Max(bins))
	}
	base := top + laneH - 6
	bw := plotW * float64(time.Millisecond) / float64(win.to.Sub(win.from))
	for k, v := range bins {
		if v == 0 {
			continue
		}
		h := (laneH - 12) * float64(min(v, peak)) / float64(peak)
		x := win.left + float64(k)*bw
		d.rect(x, base-h, min(max(bw*0.8, 1), win.left+plotW-x), h, "#2a7", "bar")
	}
	d.line(win.left, base, win.left+plotW, base, "#999", false, "baseline")
	return peak
}

// axis draws ticks under the lanes at a step whose labels do not touch,
// labelled in ms from zero (the move start), and returns the y below it.
func axis(d *svgWriter, win window, zero time.Time, y float64) float64 {
	span := win.to.Sub(win.from)
	widest := max(textWidth(signedMS(win.from.Sub(zero)), smallSize), textWidth(signedMS(win.to.Sub(zero)), smallSize))
	step := time.Millisecond
	for _, s := range []time.Duration{1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000} {
		step = s * time.Millisecond
		if float64(step)/float64(span)*plotW >= widest+12 {
			break
		}
	}
	first := win.from.Sub(zero).Truncate(step)
	if first < win.from.Sub(zero) {
		first += step
	}
	for off := first; zero.Add(off).Before(win.to) || zero.Add(off).Equal(win.to); off += step {
		xx := win.x(zero.Add(off))
		d.line(xx, y, xx, y+5, "#999", false, "tick")
		d.text(xx, y+7+smallSize*ascent, smallSize, "", "middle", "", signedMS(off))
	}
	return y + axisH
}

// signedMS formats d in whole milliseconds with its sign ("0 ms" at zero).
func signedMS(d time.Duration) string {
	v := d.Round(time.Millisecond) / time.Millisecond
	if v == 0 {
		return "0 ms"
	}
	return fmt.Sprintf("%+d ms", v)
}

// wrap breaks s into lines of at most width units at size (by the
// estimate), at spaces.
func wrap(s string, width, size float64) []string {
	var out []string
	var cur string
	for _, w := range strings.Fields(s) {
		next := w
		if cur != "" {
			next = cur + " " + w
		}
		if cur != "" && textWidth(next, size) > width {
			out = append(out, cur)
			next = w
		}
		cur = next
	}
	if cur != "" {
		out = append(out, cur)
	}
	return out
}
