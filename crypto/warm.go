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
//
// When that many are held, a new warm stream replaces the oldest one if
// it has waited Tuning.WarmEvictAfter: readers that stopped (a player
// closed, readers that warmed segments others had already read) would
// otherwise hold every place and the ahead budget for WarmTTL, and a
// reader going through a playlist fast would meanwhile get no warm-ahead.
// One that has waited less is left alone: a fast reader adopts its warm
// streams within a fraction of that, so two of them do not undo each
// other's.
//
// The ahead budget fills the same way, with fewer streams: three left by
// readers that stopped held all of it for WarmTTL, so a reader going
// through a playlist after them adopted streams with nothing made, and
// encrypted its chunks alone (the lane engine's steps of one lane: the
// origin's CPU per GB went from 0.87 to 1.42 s). So a warm stream knows
// the File whose reader asked for it (WarmFor). When the budget is full,
// a reader that holds no warm stream yet stops those whose asker nobody
// reads any more and that have waited WarmEvictAfter. All of them: one
// alone would free tokens the others, blocked on the budget, take at
// once. Only a reader that holds none: players reading in real time are
// idle between segments, and each would otherwise stop the other's
// streams at every segment, their work then fetched and made again. The
// oldest stream alone would not do either: a player's oldest is its own
// next segment.
var warmHeld atomic.Int32

// warmOrder lists the Files holding a warm stream, oldest first.
var warmOrder struct {
	sync.Mutex
	files []*File
}

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
	since time.Time // when r was started
	by    *File     // the File whose reader asked for it last (nil: none said)
}

// Warm is WarmFor(nil): a warm stream nobody in particular asked for.
func (f *File) Warm() { f.WarmFor(nil) }

// WarmFor starts reading f from its start in the background for a reader
// expected to open it soon; by is the File being read by the reader that
// asks (the segment before f), or nil. It does nothing when f is already
// warm (by then becomes its asker) or being read (a concurrent reader got
// there first), when Tuning.MaxWarmStreams are held, or for an empty File.
func (f *File) WarmFor(by *File) {
	if f.size == 0 || f.open.Load() > 0 {
		return
	}
	if f.rewarm(by) {
		return
	}
	t := tun()
	if by != nil && budgetFull(t) && !asking(by) {
		evictForsaken(f, t.WarmEvictAfter)
	}
	for warmHeld.Add(1) > int32(t.MaxWarmStreams) {
		warmHeld.Add(-1)
		if !evictWarm(f, t.WarmEvictAfter) {
			return
		}
	}
	s := &f.warm
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.r != nil { // warmed meanwhile
		warmHeld.Add(-1)
		return
	}
	r := f.newReader()
	r.mu.Lock()
	r.startStream(0, true)
	r.warm = true
	r.mu.Unlock()
	s.r, s.since, s.by = r, time.Now(), by
	warmOrder.Lock()
	warmOrder.files = append(warmOrder.files, f)
	warmOrder.Unlock()
	s.timer = time.AfterFunc(t.WarmTTL, func() {
		if r := f.takeWarm(); r != nil {
			r.Close()
		}
	})
}

// rewarm reports whether f is warm already, and then makes by (if not
// nil) its asker: the reader going on through the playlist still wants it.
func (f *File) rewarm(by *File) bool {
	f.warm.mu.Lock()
	defer f.warm.mu.Unlock()
	if f.warm.r != nil && by != nil {
		f.warm.by = by
	}
	return f.warm.r != nil
}

// asking reports whether by's reader already holds a warm stream (it is
// their asker).
func asking(by *File) bool {
	warmOrder.Lock()
	held := append([]*File(nil), warmOrder.files...)
	warmOrder.Unlock()
	for _, g := range held {
		g.warm.mu.Lock()
		mine := g.warm.r != nil && g.warm.by == by
		g.warm.mu.Unlock()
		if mine {
			return true
		}
	}
	return false
}

// budgetFull reports whether the warm streams hold all of the ahead budget.
func budgetFull(t *settings) bool {
	return cap(t.aheadTokens) > 0 && len(t.aheadTokens) == cap(t.aheadTokens)
}

// evictForsaken stops the warm streams (not f's) whose asker nobody reads
// any more (no Reader open, not warm itself) and that have waited at least
// minAge (0: never).
func evictForsaken(f *File, minAge time.Duration) {
	if minAge <= 0 {
		return
	}
	warmOrder.Lock()
	held := append([]*File(nil), warmOrder.files...)
	warmOrder.Unlock()
	for _, g := range held {
		if g == f {
			continue
		}
		g.warm.mu.Lock()
		by, waited := g.warm.by, g.warm.r != nil && time.Since(g.warm.since) >= minAge
		g.warm.mu.Unlock()
		if !waited || by == nil || !by.Idle() {
			continue
		}
		if r := g.takeWarm(); r != nil {
			r.Close()
			warmEvictions.Add(1)
		}
	}
}

// evictWarm stops the oldest warm stream (not f's) if it has waited at
// least minAge (0: never); it reports whether it stopped one.
func evictWarm(f *File, minAge time.Duration) bool {
	if minAge <= 0 {
		return false
	}
	warmOrder.Lock()
	var oldest *File
	for _, g := range warmOrder.files {
		if g != f {
			oldest = g
			break
		}
	}
	warmOrder.Unlock()
	if oldest == nil {
		return false
	}
	oldest.warm.mu.Lock()
	waited := oldest.warm.r != nil && time.Since(oldest.warm.since) >= minAge
	oldest.warm.mu.Unlock()
	if !waited {
		return false
	}
	if r := oldest.takeWarm(); r != nil {
		r.Close()
		warmEvictions.Add(1)
	}
	return true // stopped, or adopted meanwhile: a place is free either way
}

// evictOldestWarm stops the oldest warm stream, however long it has
// waited: a reader needs its buffers (buffers.go). It reports whether
// there was one.
func evictOldestWarm() bool {
	warmOrder.Lock()
	var oldest *File
	if len(warmOrder.files) > 0 {
		oldest = warmOrder.files[0]
	}
	warmOrder.Unlock()
	if oldest == nil {
		return false
	}
	if r := oldest.takeWarm(); r != nil {
		r.Close()
		warmEvictions.Add(1)
	}
	return true
}

// warmEvictions counts warm streams stopped to make room for a newer one.
var warmEvictions atomic.Int64

// WarmEvictions is how many warm streams gave their place to a newer one.
func WarmEvictions() int64 { return warmEvictions.Load() }

// Warming reports whether f has a warm stream waiting for its reader.
// Idle reports whether nobody reads f: no Reader open, no warm stream.
func (f *File) Idle() bool { return f.open.Load() == 0 && !f.Warming() }

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
	s.r, s.by = nil, nil
	s.timer.Stop()
	warmHeld.Add(-1)
	warmOrder.Lock()
	for i, g := range warmOrder.files {
		if g == f {
			warmOrder.files = append(warmOrder.files[:i], warmOrder.files[i+1:]...)
			break
		}
	}
	warmOrder.Unlock()
	return r
}
