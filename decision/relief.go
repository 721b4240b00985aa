package decision

import "github.com/tailsift/tailsift/buffer"

// reliefBatch is how many of the oldest traces stress relief takes at a
// time, between checks of the buffer's memory.
const reliefBatch = 256

// relieve appends to due the oldest traces to decide now, if the buffer is
// about to refuse spans and Config.StressRelief is on, until the buffer is
// back under 7/8 of its limit (decideMu held). Deciding early with the
// spans at hand beats refusing new ones: the policies still keep error and
// high-priority traces, which show themselves early, and shed the rest.
func (e *Engine) relieve(due []*buffer.Trace) []*buffer.Trace {
	if !e.cfg.StressRelief || !e.buf.Pressure() {
		return due
	}
	n := len(due)
	for range 1024 { // bounded: a tick must end
		st := e.buf.Stats()
		if st.Bytes <= st.MemoryLimit/8*7 || st.Traces == 0 {
			break
		}
		due = e.buf.TakeOldest(reliefBatch, due)
	}
	var spans int64
	for _, t := range due[n:] {
		spans += int64(t.SpanCount)
		t.Relieved = true
	}
	e.count.relievedTraces.Add(int64(len(due) - n))
	e.count.relievedSpans.Add(spans)
	return due
}
