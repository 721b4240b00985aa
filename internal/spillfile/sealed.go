package spillfile

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Sealed is a Store that encrypts every value with AES-GCM (data_key_file:
// nothing in the data directory is in the clear). Each value gets a random
// nonce, stored in front of it: values are written once, so there is no
// nonce to track.
type Sealed struct {
	*Store
	aead    cipher.AEAD
	scratch sync.Pool // *[]byte
}

// NewSealed wraps s; key is 16, 24 or 32 bytes (AES-128/192/256).
func NewSealed(s *Store, key []byte) (*Sealed, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("spillfile: encryption key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Sealed{Store: s, aead: aead}, nil
}

func (s *Sealed) buf() *[]byte {
	if b, ok := s.scratch.Get().(*[]byte); ok {
		return b
	}
	return new([]byte)
}

// Write seals each value, then writes them.
func (s *Sealed) Write(keys, values [][]byte, ttl time.Duration, sync bool) error {
	bp := s.buf()
	defer s.scratch.Put(bp)
	n := 0
	for _, v := range values {
		n += s.aead.NonceSize() + len(v) + s.aead.Overhead()
	}
	buf := (*bp)[:0]
	if cap(buf) < n {
		buf = make([]byte, 0, n)
	}
	sealed := make([][]byte, len(values))
	for i, v := range values {
		start := len(buf)
		buf = buf[:start+s.aead.NonceSize()]
		if _, err := rand.Read(buf[start:]); err != nil {
			return err
		}
		buf = s.aead.Seal(buf, buf[start:start+s.aead.NonceSize()], v, keys[i])
		sealed[i] = buf[start:]
	}
	*bp = buf
	return s.Store.Write(keys, sealed, ttl, sync)
}

var errUnsealed = errors.New("spillfile: a value does not decrypt")

// Get reads and opens the value of key.
func (s *Sealed) Get(key, dst []byte) ([]byte, error) {
	bp := s.buf()
	defer s.scratch.Put(bp)
	v, err := s.Store.Get(key, (*bp)[:0])
	*bp = v
	if err != nil {
		return dst, err
	}
	return s.open(key, v, dst)
}

func (s *Sealed) open(key, v, dst []byte) ([]byte, error) {
	ns := s.aead.NonceSize()
	if len(v) < ns {
		return dst, errUnsealed
	}
	out, err := s.aead.Open(dst, v[:ns], v[ns:], key)
	if err != nil {
		return dst, errUnsealed
	}
	return out, nil
}

// Scan opens each value it yields.
func (s *Sealed) Scan(prefix []byte, fn func(key, value []byte) error) error {
	var plain []byte
	return s.Store.Scan(prefix, func(key, value []byte) error {
		var err error
		if plain, err = s.open(key, value, plain[:0]); err != nil {
			return err
		}
		return fn(key, plain)
	})
}
