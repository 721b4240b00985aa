package wal

import (
	"bufio"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"strconv"
	"strings"
)

// A segment file is a header and a sequence of records:
//
//	header: "tswal\x00\x00\x01" | flags byte (1: encrypted) | 8-byte key check
//	record: uint32 length | uint32 CRC-32C | type byte | payload
//
// length counts the type byte and the payload as stored (sealed with
// AES-GCM when encrypted, nonce = segment number and offset); the CRC
// covers the same bytes. A record's offset is its position in the file.
// Numbers are big-endian.

const (
	headerLen       = 17
	recordHeaderLen = 8
	flagEncrypted   = 1
	// MaxRecordBytes bounds one record, so a corrupt length cannot make a
	// reader allocate more.
	MaxRecordBytes = 256 << 20

	// typeRelease is the log's own record: the refs it lists are released.
	typeRelease = 0x7f
	// liveBit marks a record that counts toward its segment's live
	// records until released (Writer.Append with live).
	liveBit = 0x80
)

var (
	magic      = [8]byte{'t', 's', 'w', 'a', 'l', 0, 0, 1}
	castagnoli = crc32.MakeTable(crc32.Castagnoli)

	// ErrKeyMismatch is returned by Open when segments were written with
	// another encryption key, or none.
	ErrKeyMismatch = errors.New("wal: segments were written with another encryption key (--data-key-file), or none")
	errCorrupt     = errors.New("wal: corrupt record")
)

// Ref names one record: its segment and its offset in the segment.
type Ref uint64

func makeRef(seg uint32, off int64) Ref { return Ref(uint64(seg)<<32 | uint64(uint32(off))) }

// Segment returns the number of the segment holding the record.
func (r Ref) Segment() uint32 { return uint32(r >> 32) }

// Offset returns the position of the record in its segment file.
func (r Ref) Offset() int64 { return int64(uint32(r)) }

func (r Ref) String() string { return fmt.Sprintf("%d@%d", r.Segment(), r.Offset()) }

func segmentName(seg uint32) string { return fmt.Sprintf("%08x.wal", seg) }

// parseSegmentName returns the number of a segment file, or false for a
// file that is not one.
func parseSegmentName(name string) (uint32, bool) {
	hex, ok := strings.CutSuffix(name, ".wal")
	if !ok || len(hex) != 8 {
		return 0, false
	}
	n, err := strconv.ParseUint(hex, 16, 32)
	return uint32(n), err == nil
}

// sealer encrypts record payloads, when the log has a key.
type sealer struct {
	aead  cipher.AEAD
	check [8]byte // identifies the key without revealing it
}

func newSealer(key []byte) (*sealer, error) {
	if len(key) == 0 {
		return nil, nil
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("wal: encryption key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	s := &sealer{aead: aead}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte("tailsift wal key check"))
	copy(s.check[:], mac.Sum(nil))
	return s, nil
}

func nonce(seg uint32, off int64) []byte {
	var n [12]byte
	binary.BigEndian.PutUint32(n[:4], seg)
	binary.BigEndian.PutUint64(n[4:], uint64(off))
	return n[:]
}

func appendHeader(dst []byte, s *sealer) []byte {
	dst = append(dst, magic[:]...)
	if s == nil {
		dst = append(dst, 0)
		return append(dst, make([]byte, 8)...)
	}
	dst = append(dst, flagEncrypted)
	return append(dst, s.check[:]...)
}

func checkHeader(h []byte, s *sealer) error {
	if len(h) < headerLen || [8]byte(h[:8]) != magic {
		return errCorrupt
	}
	if h[8] > flagEncrypted {
		return errCorrupt
	}
	encrypted := h[8] == flagEncrypted
	if encrypted != (s != nil) || (s != nil && [8]byte(h[9:17]) != s.check) {
		return ErrKeyMismatch
	}
	return nil
}

// segmentReader reads one segment's records in order.
type segmentReader struct {
	seg    uint32
	r      *bufio.Reader
	sealer *sealer
	off    int64 // of the next record
	size   int64 // of the file: no record reaches past it
	buf    []byte
}

func newSegmentReader(seg uint32, f File, s *sealer, buf []byte) (*segmentReader, error) {
	size, err := f.Size()
	if err != nil {
		return nil, err
	}
	sr := &segmentReader{seg: seg, r: bufio.NewReaderSize(f, 256<<10), sealer: s, off: headerLen, size: size, buf: buf}
	var h [headerLen]byte
	if _, err := io.ReadFull(sr.r, h[:]); err != nil {
		return sr, errCorrupt // a segment created but torn before its header
	}
	return sr, checkHeader(h[:], s)
}

// next returns the next record: its offset, type (without liveBit), live
// flag and payload (valid until the next call). At the clean end of the
// segment it returns io.EOF; at a torn or corrupt record, errCorrupt,
// with sr.off at that record.
func (sr *segmentReader) next() (off int64, typ byte, live bool, payload []byte, err error) {
	var h [recordHeaderLen]byte
	n, err := io.ReadFull(sr.r, h[:])
	if err == io.EOF {
		return 0, 0, false, nil, io.EOF
	}
	if err != nil {
		return 0, 0, false, nil, errCorrupt // torn in the header
	}
	_ = n
	length := binary.BigEndian.Uint32(h[:4])
	if length == 0 || length > MaxRecordBytes || int64(length) > sr.size-sr.off-recordHeaderLen {
		return 0, 0, false, nil, errCorrupt
	}
	if cap(sr.buf) < int(length) {
		sr.buf = make([]byte, length)
	}
	body := sr.buf[:length]
	if _, err := io.ReadFull(sr.r, body); err != nil {
		return 0, 0, false, nil, errCorrupt
	}
	if crc32.Checksum(body, castagnoli) != binary.BigEndian.Uint32(h[4:]) {
		return 0, 0, false, nil, errCorrupt
	}
	off = sr.off
	typ, payload = body[0], body[1:]
	if sr.sealer != nil {
		payload, err = sr.sealer.aead.Open(payload[:0], nonce(sr.seg, off), payload, body[:1])
		if err != nil {
			return 0, 0, false, nil, errCorrupt
		}
	}
	sr.off += recordHeaderLen + int64(length)
	return off, typ &^ liveBit, typ&liveBit != 0, payload, nil
}
