package policy

// Span-level access for rules. The summary in [Trace] answers trace-level
// conditions (duration, span count, errors, root); conditions on the root
// span, on "any span" or "every span", and rules keyed by attributes read
// spans through a [SpanSource] that the caller implements over its own
// storage (the sampler reads raw OTLP bytes on demand; tests build spans in
// memory). The package itself never decodes wire formats.

// ValueKind is the type of an attribute value.
type ValueKind uint8

// Attribute value kinds. Arrays, maps and bytes are Other: they can be
// tested for existence but not compared.
const (
	ValueNone ValueKind = iota // absent, or present without a value
	ValueString
	ValueInt
	ValueDouble
	ValueBool
	ValueOther
)

// Value is an attribute value. Str aliases the caller's bytes: valid until
// the SpanSource method that returned it is called again or the evaluation
// ends.
type Value struct {
	Kind   ValueKind
	Str    []byte
	Int    int64
	Double float64
	Bool   bool
}

// Span is the fixed part of a span. Name aliases the caller's bytes.
type Span struct {
	Name          []byte
	Kind          int32 // OTLP SpanKind: 0 unspecified, 1 internal, 2 server, 3 client, 4 producer, 5 consumer
	StatusCode    int32 // OTLP status: 0 unset, 1 ok, 2 error
	StartUnixNano uint64
	EndUnixNano   uint64
	IsRoot        bool // no parent span
}

// SpanSource reads the spans of one trace on demand, by index 0..Len()-1 in
// arrival order. It is valid for one evaluation and used by one goroutine.
// Implementations must be cheap and must not allocate per call: rules call
// them per span (SpanAttr with a key given as a string, no conversion).
type SpanSource interface {
	// Len is the number of spans.
	Len() int
	// Root is the index of the root span (the first that arrived, if
	// several), or -1 if the trace has none.
	Root() int
	// Span returns the fixed fields of span i.
	Span(i int) Span
	// SpanAttr returns the attribute key of span i.
	SpanAttr(i int, key string) (Value, bool)
	// ResourceAttr returns the attribute key of span i's resource.
	ResourceAttr(i int, key string) (Value, bool)
	// HasEvent reports whether span i has an event with this name (e.g.
	// "exception").
	HasEvent(i int, name string) bool
	// Services is the number of distinct service.name values among the
	// spans' resources (spans without one count as one service "").
	Services() int
}
