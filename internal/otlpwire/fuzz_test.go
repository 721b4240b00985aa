package otlpwire

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"sync"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/tailsift/tailsift/internal/otlptest"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
)

// FuzzScan feeds arbitrary bytes to the scanner. It must never panic; input
// it accepts must build into a request that scans to the same spans and that
// the reference protobuf decoder also accepts.
func FuzzScan(f *testing.F) {
	for seed := range uint64(8) {
		f.Add(marshal(f, otlptest.RandomRequest(rand.New(rand.NewPCG(seed, 11)))))
	}
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0x00})
	f.Fuzz(func(t *testing.T, in []byte) {
		var req Request
		if err := req.Scan(in); err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		req.GroupByTrace()
		var b Builder
		for i := range req.Spans {
			b.Add(req.Groups[req.Spans[i].Group], req.Spans[i].Raw)
		}
		out := b.AppendRequest(nil)
		var again Request
		if err := again.Scan(out); err != nil {
			t.Fatalf("built request does not scan: %v", err)
		}
		if len(again.Spans) != len(req.Spans) {
			t.Fatalf("rebuilt request has %d spans, want %d", len(again.Spans), len(req.Spans))
		}
		for i := range req.Spans {
			a, z := &req.Spans[i], &again.Spans[i]
			if a.TraceID != z.TraceID || a.SpanID != z.SpanID || !bytes.Equal(a.Raw, z.Raw) {
				t.Fatalf("span %d changed in the rebuild", i)
			}
		}
		if err := proto.Unmarshal(out, bytesOnlyRequest()); err != nil {
			t.Fatalf("reference decoder rejects the built request: %v", err)
		}
	})
}

// bytesOnlyRequest returns an empty ExportTraceServiceRequest whose string
// fields are declared bytes: protobuf-go's decoder without its UTF-8 check,
// which the scanner deliberately does not make (strings are forwarded byte
// for byte). Everything else about wire validity it checks in full.
var bytesOnlyRequest = sync.OnceValue(func() func() proto.Message {
	files := new(protoregistry.Files)
	var add func(fd protoreflect.FileDescriptor)
	add = func(fd protoreflect.FileDescriptor) {
		if _, err := files.FindFileByPath(fd.Path()); err == nil {
			return
		}
		imports := fd.Imports()
		for i := range imports.Len() {
			add(imports.Get(i).FileDescriptor)
		}
		fdp := protodesc.ToFileDescriptorProto(fd)
		var rewrite func(msgs []*descriptorpb.DescriptorProto)
		rewrite = func(msgs []*descriptorpb.DescriptorProto) {
			for _, m := range msgs {
				for _, f := range m.Field {
					if f.GetType() == descriptorpb.FieldDescriptorProto_TYPE_STRING {
						f.Type = descriptorpb.FieldDescriptorProto_TYPE_BYTES.Enum()
					}
				}
				rewrite(m.NestedType)
			}
		}
		rewrite(fdp.MessageType)
		nfd, err := protodesc.NewFile(fdp, files)
		if err != nil {
			panic(err)
		}
		if err := files.RegisterFile(nfd); err != nil {
			panic(err)
		}
	}
	md := (&coltracepb.ExportTraceServiceRequest{}).ProtoReflect().Descriptor()
	add(md.ParentFile())
	d, err := files.FindDescriptorByName(md.FullName())
	if err != nil {
		panic(err)
	}
	return func() proto.Message { return dynamicpb.NewMessage(d.(protoreflect.MessageDescriptor)) }
})()
