package top

import (
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"time"
)

// Metric names the frame reads.
const (
	mReceived    = "tailsift_ingest_spans_received_total"
	mRefused     = "tailsift_ingest_spans_refused_total"
	mSent        = "tailsift_export_spans_sent_total"
	mAccepted    = "tailsift_decision_spans_accepted_total"
	mKept        = "tailsift_decision_spans_kept_total"
	mTraces      = "tailsift_decision_traces_total"
	mLate        = "tailsift_decision_late_spans_total"
	mMemory      = "tailsift_buffer_memory_bytes"
	mMemoryLimit = "tailsift_buffer_memory_limit_bytes"
	mSpilled     = "tailsift_buffer_spilled_bytes"
	mDisk        = "tailsift_store_disk_bytes"
	mMembers     = "tailsift_cluster_members"
	mPressure    = "tailsift_buffer_pressure"
	mStoreFull   = "tailsift_store_full"
)

// opt is a value that may be missing (shown as "-").
type opt struct {
	v  float64
	ok bool
}

func (o opt) add(p opt) opt {
	if !p.ok {
		return o
	}
	return opt{o.v + p.v, true}
}

func (o opt) max(p opt) opt {
	if !p.ok || (o.ok && o.v >= p.v) {
		return o
	}
	return p
}

// pair is the previous (if any, same address, scraped) and current
// snapshot of one node.
type pair struct {
	prev *NodeSnapshot
	cur  NodeSnapshot
	secs float64 // elapsed seconds; 0: no rates
}

func (p pair) gauge(name string, match ...string) opt {
	v, ok := p.cur.Value(name, match...)
	return opt{v, ok}
}

// delta is a counter's increase since the previous scrape (a reset counts
// from zero). Missing without a previous scrape or the metric.
func (p pair) delta(name string, match ...string) opt {
	if p.prev == nil {
		return opt{}
	}
	c, ok := p.cur.Value(name, match...)
	if !ok {
		return opt{}
	}
	b, ok := p.prev.Value(name, match...)
	if !ok {
		b = 0
	}
	d := c - b
	if d < 0 {
		d = c
	}
	return opt{d, true}
}

func (p pair) rate(name string, match ...string) opt {
	if p.secs <= 0 {
		return opt{}
	}
	d := p.delta(name, match...)
	if !d.ok {
		return d
	}
	return opt{d.v / p.secs, true}
}

// row is the node table's numbers for one node or the total.
type row struct {
	in, inRate, out, outRate opt
	kept, accepted           opt // deltas when rates are known, else totals
	late, refused            opt // rates
	mem, limit, spilled      opt
	disk, members            opt
	pressure, full           opt
}

func nodeRow(p pair) row {
	r := row{
		in:       p.gauge(mReceived),
		inRate:   p.rate(mReceived),
		out:      p.gauge(mSent),
		outRate:  p.rate(mSent),
		late:     p.rate(mLate),
		refused:  p.rate(mRefused),
		mem:      p.gauge(mMemory),
		limit:    p.gauge(mMemoryLimit),
		spilled:  p.gauge(mSpilled),
		disk:     p.gauge(mDisk),
		members:  p.gauge(mMembers),
		pressure: p.gauge(mPressure),
		full:     p.gauge(mStoreFull),
	}
	if !r.refused.ok && r.inRate.ok {
		r.refused = opt{0, true} // no series yet: nothing refused
	}
	if p.secs > 0 {
		r.kept, r.accepted = p.delta(mKept), p.delta(mAccepted)
	} else {
		r.kept, r.accepted = p.gauge(mKept), p.gauge(mAccepted)
	}
	return r
}

func (r row) plus(o row) row {
	return row{
		in: r.in.add(o.in), inRate: r.inRate.add(o.inRate),
		out: r.out.add(o.out), outRate: r.outRate.add(o.outRate),
		kept: r.kept.add(o.kept), accepted: r.accepted.add(o.accepted),
		late: r.late.add(o.late), refused: r.refused.add(o.refused),
		mem: r.mem.add(o.mem), limit: r.limit.add(o.limit), spilled: r.spilled.add(o.spilled),
		disk: r.disk.add(o.disk), members: r.members.max(o.members),
		pressure: r.pressure.add(o.pressure), full: r.full.add(o.full),
	}
}

func (r row) cells(name string) []string {
	keep := opt{}
	if r.kept.ok && r.accepted.ok && r.accepted.v > 0 {
		keep = opt{r.kept.v / r.accepted.v, true}
	}
	memPct := opt{}
	if r.mem.ok && r.limit.ok && r.limit.v > 0 {
		memPct = opt{r.mem.v / r.limit.v, true}
	}
	return []string{name,
		count(r.in), rate(r.inRate), count(r.out), rate(r.outRate),
		pct(keep), rate(r.late), rate(r.refused),
		bytes(r.mem), bytes(r.limit), pct(memPct), bytes(r.spilled), bytes(r.disk),
		count(r.members), r.state(),
	}
}

// state is "ok" or the overload markers, prefixed with "!".
func (r row) state() string {
	var flags []string
	if r.pressure.ok && r.pressure.v > 0 {
		flags = append(flags, "pressure")
	}
	if r.refused.ok && r.refused.v > 0 {
		flags = append(flags, "refusing")
	}
	if r.full.ok && r.full.v > 0 {
		flags = append(flags, "disk-full")
	}
	if len(flags) == 0 {
		return "ok"
	}
	return "! " + strings.Join(flags, ",")
}

var nodeHeader = []string{"NODE", "SPANS IN", "IN/S", "SPANS OUT", "OUT/S", "KEEP",
	"LATE/S", "REFUSED/S", "MEM", "LIMIT", "MEM%", "SPILLED", "DISK", "MEMBERS", "STATE"}

// Render writes one frame: a table of nodes and their total, ingest by
// protocol, and decisions by rule. prev is the previous scrape (nil or empty
// on the first frame: rates show "-"), matched to cur by address; elapsed is
// the time between them. Lines are cut at width if width > 0.
func Render(w io.Writer, prev, cur []NodeSnapshot, elapsed time.Duration, width int) error {
	prevBy := map[string]*NodeSnapshot{}
	for i := range prev {
		if prev[i].Err == nil {
			prevBy[prev[i].Addr] = &prev[i]
		}
	}
	var pairs []pair // scraped nodes only
	up := 0
	var at time.Time
	for _, c := range cur {
		if c.At.After(at) {
			at = c.At
		}
		if c.Err != nil {
			continue
		}
		up++
		p := pair{cur: c, prev: prevBy[c.Addr]}
		if p.prev != nil {
			p.secs = elapsed.Seconds()
		}
		pairs = append(pairs, p)
	}

	var b strings.Builder
	b.WriteString("tailsift top")
	if !at.IsZero() {
		b.WriteString("  " + at.Format("15:04:05"))
	}
	fmt.Fprintf(&b, "  nodes %d/%d up", up, len(cur))
	if len(prevBy) > 0 && elapsed > 0 {
		fmt.Fprintf(&b, "  rates over %s", elapsed.Round(time.Millisecond))
	} else {
		b.WriteString("  rates: - until the next scrape")
	}
	b.WriteString("\n\n")

	// Nodes.
	t := table{header: nodeHeader, lastLeft: true}
	var total row
	pi := 0
	for _, c := range cur {
		if c.Err != nil {
			t.rows = append(t.rows, []string{c.Addr, "error: " + oneLine(c.Err.Error())})
			continue
		}
		r := nodeRow(pairs[pi])
		pi++
		total = total.plus(r)
		t.rows = append(t.rows, r.cells(c.Addr))
	}
	if len(cur) > 1 {
		t.rows = append(t.rows, total.cells("TOTAL"))
	}
	t.write(&b)

	// Ingest by protocol and decisions by rule: one column per scraped node.
	if len(pairs) > 0 {
		b.WriteString("\n")
		byTable(&b, pairs, []string{"PROTOCOL"}, "SPANS", "spans/s in", mReceived, []string{"protocol"})
		b.WriteString("\n")
		byTable(&b, pairs, []string{"RULE", "DECISION"}, "TRACES", "traces/s", mTraces, []string{"rule", "decision"})
	}

	for line := range strings.Lines(b.String()) {
		line = strings.TrimRight(line, " \n")
		if width > 0 && len(line) > width {
			line = line[:width]
		}
		if _, err := io.WriteString(w, line+"\n"); err != nil {
			return err
		}
	}
	return nil
}

// byTable writes a metric's totals and rates grouped by labels: one row per
// label combination that counted anything, the total over nodes, then each
// node's rate.
func byTable(b *strings.Builder, pairs []pair, keyHeader []string, totalHeader, unit, name string, labels []string) {
	keys := map[string]bool{}
	for _, p := range pairs {
		for k := range p.cur.By(name, labels...) {
			keys[k] = true
		}
	}
	header := append(append([]string{}, keyHeader...), totalHeader, "TOTAL/S")
	for _, p := range pairs {
		header = append(header, p.cur.Addr)
	}
	t := table{header: header, left: len(keyHeader)}
	sorted := make([]string, 0, len(keys))
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	hidden := 0
	for _, k := range sorted {
		match := make([]string, 0, 2*len(labels))
		for i, v := range strings.Split(k, "\x00") {
			match = append(match, labels[i], v)
		}
		var sum, sumRate opt
		var rates []string
		for _, p := range pairs {
			sum = sum.add(p.gauge(name, match...))
			r := p.rate(name, match...)
			sumRate = sumRate.add(r)
			rates = append(rates, rate(r))
		}
		if !sum.ok || sum.v == 0 {
			hidden++ // pre-created series that never counted
			continue
		}
		cells := strings.Split(k, "\x00")
		for i := range cells {
			if cells[i] == "" {
				cells[i] = "-"
			}
		}
		cells = append(cells, count(sum), rate(sumRate))
		t.rows = append(t.rows, append(cells, rates...))
	}
	if len(t.rows) == 0 {
		fmt.Fprintf(b, "%s: none yet\n", unit)
		return
	}
	fmt.Fprintf(b, "%s by %s\n", unit, strings.Join(labels, ", "))
	t.write(b)
	if hidden > 0 {
		fmt.Fprintf(b, "(%d more at zero not shown)\n", hidden)
	}
}

// table writes rows with aligned columns: the first left columns (at least
// one) aligned left, the rest right. A row shorter than the header (an error
// row) has its first cell aligned and the rest written as is.
type table struct {
	header   []string
	rows     [][]string
	left     int
	lastLeft bool // the last column is text: aligned left too
}

func (t table) write(b *strings.Builder) {
	left := max(t.left, 1)
	widths := make([]int, len(t.header))
	for _, r := range append([][]string{t.header}, t.rows...) {
		if len(r) != len(t.header) && len(r) > 0 {
			widths[0] = max(widths[0], len(r[0]))
			continue
		}
		for i, c := range r {
			widths[i] = max(widths[i], len(c))
		}
	}
	for _, r := range append([][]string{t.header}, t.rows...) {
		if len(r) != len(t.header) {
			b.WriteString(pad(r[0], widths[0], true))
			for _, c := range r[1:] {
				b.WriteString("  " + c)
			}
			b.WriteString("\n")
			continue
		}
		for i, c := range r {
			if i > 0 {
				b.WriteString("  ")
			}
			b.WriteString(pad(c, widths[i], i < left || (t.lastLeft && i == len(r)-1)))
		}
		b.WriteString("\n")
	}
}

func pad(s string, w int, left bool) string {
	if len(s) >= w {
		return s
	}
	if left {
		return s + strings.Repeat(" ", w-len(s))
	}
	return strings.Repeat(" ", w-len(s)) + s
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// rate formats a per-second value: one decimal below 100, whole numbers
// below 100k, then k and M.
func rate(o opt) string {
	if !o.ok {
		return "-"
	}
	v := o.v
	switch {
	case v < 100:
		return fmt.Sprintf("%.1f", v)
	case v < 100_000:
		return fmt.Sprintf("%.0f", v)
	case v < 100_000_000:
		return fmt.Sprintf("%.1fk", v/1e3)
	}
	return fmt.Sprintf("%.1fM", v/1e6)
}

// count formats a total: whole numbers below 10M, then M.
func count(o opt) string {
	if !o.ok {
		return "-"
	}
	if o.v < 10_000_000 {
		return fmt.Sprintf("%.0f", o.v)
	}
	return fmt.Sprintf("%.1fM", o.v/1e6)
}

func pct(o opt) string {
	if !o.ok || math.IsNaN(o.v) {
		return "-"
	}
	return fmt.Sprintf("%.1f%%", 100*o.v)
}

func bytes(o opt) string {
	if !o.ok {
		return "-"
	}
	v := o.v
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	i := 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%.0fB", v)
	}
	return fmt.Sprintf("%.1f%s", v, units[i])
}
