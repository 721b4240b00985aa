package buffer

import "github.com/tailsift/tailsift/internal/otlpwire"

// Interner interns the groups of one scanned request as its spans need
// them: each resource part once, each group once, however many spans and
// traces use them. It is the one way from a scanned request to a Batch:
//
//	in.Reset(buf, req)
//	defer in.Release()
//	for t := range req.Traces { bt.StartTrace(...); err := bt.AddRequestSpans(req, req.TraceSpans(t), &in) }
//	buf.Append(&bt, now)
//
// Reuse an Interner across requests; it is used by one goroutine at a time.
type Interner struct {
	buf       *Buffer
	req       *otlpwire.Request
	resources []*Resource // by req.ResourceIndex, nil until needed
	groups    []*Group    // by request group, nil until needed
}

// Reset prepares in for req's groups in buf. It does not release what a
// previous request acquired: call Release first.
func (in *Interner) Reset(buf *Buffer, req *otlpwire.Request) {
	in.buf, in.req = buf, req
	in.resources = resize(in.resources, req.Resources())
	in.groups = resize(in.groups, len(req.Groups))
}

// resize returns s with n nil elements, reusing its capacity.
func resize[T any](s []*T, n int) []*T {
	if cap(s) < n {
		return make([]*T, n)
	}
	return s[:n] // all nil: Release clears what it used
}

// Group returns the interned group of request group g.
func (in *Interner) Group(g int32) (*Group, error) {
	if grp := in.groups[g]; grp != nil {
		return grp, nil
	}
	ri := in.req.ResourceIndex(g)
	res := in.resources[ri]
	if res == nil {
		var err error
		if res, err = in.buf.AcquireResource(in.req.Groups[g].Resource); err != nil {
			return nil, err
		}
		in.resources[ri] = res
	}
	grp, err := in.buf.AcquireGroup(res, in.req.Groups[g].Scope)
	if err != nil {
		return nil, err
	}
	in.groups[g] = grp
	return grp, nil
}

// Release drops the references the request took. Spans appended keep
// their groups through their traces.
func (in *Interner) Release() {
	if in.buf == nil {
		return
	}
	for i, g := range in.groups {
		if g != nil {
			in.buf.Release(g)
			in.groups[i] = nil
		}
	}
	for i, r := range in.resources {
		if r != nil {
			in.buf.ReleaseResource(r)
			in.resources[i] = nil
		}
	}
	in.buf, in.req = nil, nil
}

// AddRequestSpans adds the spans of req at the given indexes to the trace
// begun last, interning their groups with in.
func (bt *Batch) AddRequestSpans(req *otlpwire.Request, spans []int32, in *Interner) error {
	for _, si := range spans {
		s := &req.Spans[si]
		g, err := in.Group(s.Group)
		if err != nil {
			return err
		}
		bt.AddSpan(Span{Group: g, Raw: s.Raw, StartUnixNano: s.StartUnixNano,
			EndUnixNano: s.EndUnixNano, Root: s.IsRoot(), Error: s.IsError()})
	}
	return nil
}
