package crypto

import (
	"sync"
	"sync/atomic"
	"time"
)

// Warm streams: a player (or cat, or nginx) reads a playlist's segments
// one after another, each from its first byte. The caller that sees one
// segment read to near its end warms the next: its first source window is
// requested and its first chunks encrypted while the reader finishes the
// current one, so the next open starts without a request round trip and
// CBC of two segments overlaps on two cores. The next NewReader adopts
// the stream; an unadopted one is stopped after warmTTL. At most maxWarm
// are held at once (each up to chunkQueue+1 chunks and a source window).
const maxWarm = 8

var warmTTL = 2 * time.Second // a variable for tests

var warmHeld atomic.Int32

// warmSlot holds a File's warm Reader, if any.
type warmSlot struct {
	mu    sync.Mutex
	r     *Reader
	timer *time.Timer
}

// Warm starts reading f from its start in the background for a reader
// expected to open it soon. It does nothing when f is already warm, when
// maxWarm streams are held, or for an empty File.
func (f *File) Warm() {
	if f.size == 0 {
		return
	}
	s := &f.warm
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.r != nil {
		return
	}
	if warmHeld.Add(1) > maxWarm {
		warmHeld.Add(-1)
		return
	}
	r := f.newReader()
	r.mu.Lock()
	r.startStream(0)
	r.warm = true
	r.mu.Unlock()
	s.r = r
	s.timer = time.AfterFunc(warmTTL, func() {
		if r := f.takeWarm(); r != nil {
			r.Close()
		}
	})
}

// takeWarm returns f's warm Reader, now the caller's, or nil.
func (f *File) takeWarm() *Reader {
	s := &f.warm
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.r
	if r == nil {
		return nil
	}
	s.r = nil
	s.timer.Stop()
	warmHeld.Add(-1)
	return r
}
