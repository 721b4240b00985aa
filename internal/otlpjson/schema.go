package otlpjson

import (
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
)

// message is what both directions need to know about one message type.
type message struct {
	fields []*field          // declaration order: the order Encode writes keys
	byKey  map[string]*field // lowerCamelCase JSON name and original proto name
}

// field is one field of a message with its OTLP/JSON rules resolved.
type field struct {
	fd       protoreflect.FieldDescriptor
	num      protowire.Number
	key      string   // lowerCamelCase JSON name: what Encode writes and errors name
	bit      uint64   // 1 << field index, to detect a key given twice
	oneof    uint64   // bits of all members of f's oneof; 0 if none
	presence bool     // a zero value is still written (oneof members, messages)
	msg      *message // element type of a message field or list
	idSize   int      // > 0: a hex-encoded trace or span ID of exactly this many bytes
	emptyOK  bool     // the ID may also be empty (parentSpanId of a root span)
}

// requestSchema describes ExportTraceServiceRequest and every type below it.
var requestSchema = buildMessage((&coltracepb.ExportTraceServiceRequest{}).ProtoReflect().Descriptor(),
	map[protoreflect.FullName]*message{})

// buildMessage resolves md and, recursively, the types of its fields. seen
// ends the recursion of AnyValue -> ArrayValue -> AnyValue.
func buildMessage(md protoreflect.MessageDescriptor, seen map[protoreflect.FullName]*message) *message {
	if m := seen[md.FullName()]; m != nil {
		return m
	}
	fds := md.Fields()
	if fds.Len() > 64 {
		panic("BUG: otlpjson: " + string(md.FullName()) + " has more than 64 fields; widen field.bit")
	}
	m := &message{byKey: make(map[string]*field, 2*fds.Len())}
	seen[md.FullName()] = m
	for i := range fds.Len() {
		fd := fds.Get(i)
		if fd.IsMap() || fd.Kind() == protoreflect.GroupKind {
			// OTLP has neither; their JSON forms differ from lists of messages.
			panic("BUG: otlpjson: unsupported field " + string(fd.FullName()))
		}
		f := &field{fd: fd, num: fd.Number(), key: fd.JSONName(), bit: 1 << i, presence: fd.HasPresence()}
		if fd.Message() != nil {
			f.msg = buildMessage(fd.Message(), seen)
		}
		if fd.Kind() == protoreflect.BytesKind {
			f.idSize, f.emptyOK = idRule(fd.Name())
		}
		m.fields = append(m.fields, f)
		m.byKey[f.key] = f
		m.byKey[string(fd.Name())] = f // protojson accepts the proto name too
	}
	for _, f := range m.fields {
		if od := f.fd.ContainingOneof(); od != nil {
			for j := range od.Fields().Len() {
				f.oneof |= 1 << od.Fields().Get(j).Index()
			}
		}
	}
	return m
}

// idRule reports whether a bytes field is an ID, which OTLP/JSON writes as
// hex instead of base64 ("in all OTLP Protobuf messages", so by name), and
// its required size.
func idRule(name protoreflect.Name) (size int, emptyOK bool) {
	switch name {
	case "trace_id":
		return 16, false
	case "span_id":
		return 8, false
	case "parent_span_id":
		return 8, true
	}
	return 0, false
}
