package crypto

import (
	"sync"
	"sync/atomic"
	"time"
)

// Warm streams: a player (or cat, or nginx) reads a playlist's segments
// one after another, each from its first byte. The caller that sees one
// segment being read in sequence warms the next ones (the FUSE layer: four):
// their sources are requested and they are encrypted while the reader is
// still on the current one, into the shared ahead budget (producer.go), so
// the next open starts without a request round trip and finds chunks
// made, and the segments' CBC chains share the lane engine
// (lanes_amd64.go). The next NewReader adopts the stream; an unadopted
// one is stopped after Tuning.WarmTTL, long enough for a player reading in
// real time to reach the second segment after the one it is on (10 s
// segments: 20 s). At most Tuning.MaxWarmStreams are held at once (each one
// chunk and a source window, plus what it holds of the ahead budget).
var warmHeld atomic.Int32

// warmHits counts readers that adopted a warm stream (for metrics).
var warmHits atomic.Int64

// WarmHits is how many opened readers found their stream already warm.
func WarmHits() int64 { return warmHits.Load() }

// WarmHeld is how many warm streams wait for their reader now.
func WarmHeld() int32 { return warmHeld.Load() }

// warmSlot holds a File's warm Reader, if any.
type warmSlot struct {
	mu    sync.Mutex
	r     *Reader
	timer *time.Timer
}

// Warm starts reading f from its start in the background for a reader
// expected to open it soon. It does nothing when f is already warm or
// being read (a concurrent reader got there first), when
// Tuning.MaxWarmStreams are held, or for an empty File.
func (f *File) Warm() {
	if f.size == 0 || f.open.Load() > 0 {
		return
	}
	s := &f.warm
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.r != nil {
		return
	}
	t := tun()
	if warmHeld.Add(1) > int32(t.MaxWarmStreams) {
		warmHeld.Add(-1)
		return
	}
	r := f.newReader()
	r.mu.Lock()
	r.startStream(0, true)
	r.warm = true
	r.mu.Unlock()
	s.r = r
	s.timer = time.AfterFunc(t.WarmTTL, func() {
		if r := f.takeWarm(); r != nil {
			r.Close()
		}
	})
}

// Warming reports whether f has a warm stream waiting for its reader.
func (f *File) Warming() bool {
	f.warm.mu.Lock()
	defer f.warm.mu.Unlock()
	return f.warm.r != nil
}

// StopWarm stops f's warm stream, if any (its output was withdrawn).
func (f *File) StopWarm() {
	if r := f.takeWarm(); r != nil {
		r.Close()
	}
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
