package rawcodec

import (
	"bytes"
	"testing"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

func TestBytesPassThrough(t *testing.T) {
	in := []byte{0x0a, 0x02, 0x08, 0x01}
	out, err := Codec{}.Marshal(&in)
	if err != nil {
		t.Fatal(err)
	}
	if got := out.Materialize(); !bytes.Equal(got, in) {
		t.Fatalf("marshal = %x, want %x", got, in)
	}
	// Split across buffers, as gRPC hands over large messages.
	data := mem.BufferSlice{mem.SliceBuffer(in[:1]), mem.SliceBuffer(in[1:])}
	dst := make([]byte, 0, 64)
	if err := (Codec{}).Unmarshal(data, &dst); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(dst, in) || cap(dst) != 64 {
		t.Fatalf("unmarshal = %x (cap %d), want %x reusing cap 64", dst, cap(dst), in)
	}
}

func TestProtoMessagesStillWork(t *testing.T) {
	msg := &tracepb.Status{Message: "boom", Code: tracepb.Status_STATUS_CODE_ERROR}
	data, err := Codec{}.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	var back tracepb.Status
	if err := (Codec{}).Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(msg, &back) {
		t.Fatalf("round trip = %v, want %v", &back, msg)
	}
	if _, err := (Codec{}).Marshal(42); err == nil {
		t.Fatal("Marshal(int) succeeded, want error")
	}
	if err := (Codec{}).Unmarshal(data, new(int)); err == nil {
		t.Fatal("Unmarshal into *int succeeded, want error")
	}
}
