package crypto

import (
	stdcipher "crypto/cipher"
	"slices"
	"sync/atomic"
	"time"
)

// The CBC lane engine. CBC encryption is serial within a chain: on one
// core AESENC's latency, not its throughput, bounds a single stream,
// while four interleaved chains run at nearly four times its speed
// (cbcEnc4Asm; the README's bench section has the figures). A sequential reader has more than one chain in
// flight: the segments after the one it reads are warmed ahead of it
// (warm.go), and concurrent readers have one each. Producers hand their
// AES-128-CBC chunks to one engine goroutine, which encrypts up to four
// of them side by side, a slice of each at a time, so that a chunk
// arriving while another is being encrypted joins it at the next slice.
//
// A producer spends most of a chunk's time reading its plaintext from
// the store, so two chunks rarely arrive together by chance: when a job
// starts alone or one finishes, and another producer is filling its
// chunk, the engine waits up to Tuning.LaneLinger for it. Waiting costs no CPU;
// a lane costs as much CPU alone as with three others. The producers
// then fall into step.
//
// Only producers (read-ahead) use it: a synchronous read (a seek) would
// pay two goroutine switches for no company.

// maxLanes is the chains cbcEnc4Asm interleaves; each step encrypts
// Tuning.LaneSlice of every lane.
const maxLanes = 4

// laneBytes[i] counts the bytes encrypted in steps of i+1 lanes.
var laneBytes [maxLanes]atomic.Int64

// LaneStats returns how many bytes the engine encrypted in steps of 1, 2,
// 3 and 4 lanes since the process started (the daemon logs it on exit).
func LaneStats() [maxLanes]int64 {
	var s [maxLanes]int64
	for i := range s {
		s[i] = laneBytes[i].Load()
	}
	return s
}

// producing counts the producers making a chunk for the engine (between
// taking room for it and sending it): those that will hand it a job soon.
var producing atomic.Int32

// laneJob is one chunk for the engine: buf, a multiple of 16 bytes, is
// encrypted in place from chain, which is updated. done receives once
// when it is finished.
type laneJob struct {
	rk    *[176]byte
	chain [16]byte
	buf   []byte
	done  chan struct{}

	// A patient job (a warm stream's chunk that no reader reads yet) may
	// wait for company: see runLanes. wanted, when set, says a reader has
	// opened its stream (or it is stopping) after all.
	patient bool
	wanted  *atomic.Bool
	since   time.Time // when it reached the engine
}

// laneJobs feeds the engine; buffered so that handing in a job never
// waits on the engine's step (the producer waits for the result anyway).
var laneJobs = make(chan *laneJob, 64)

// lanePoke wakes an engine waiting with patient jobs only: one of them is
// wanted now (laneJob.wanted).
var lanePoke = make(chan struct{}, 1)

func init() {
	if hasAESNI {
		go runLanes(laneJobs)
	}
}

// laneKey returns the round keys of b when the engine can encrypt its
// chunks (AES-128 with AES-NI), else nil.
func laneKey(b stdcipher.Block) *[176]byte {
	if cb, ok := b.(*cbcBlock); ok {
		return &cb.rk
	}
	return nil
}

// encryptLanes encrypts j through the engine and waits for it.
func encryptLanes(j *laneJob) {
	if len(j.buf) == 0 {
		return
	}
	if j.done == nil {
		j.done = make(chan struct{}, 1)
	}
	laneJobs <- j
	<-j.done
}

// pokeLanes tells the engine a patient job is wanted now.
func pokeLanes() {
	select {
	case lanePoke <- struct{}{}:
	default:
	}
}

// A lane costs as much alone as with three others, so the engine fills
// lanes where it can. Jobs a reader waits for go at once (after a short
// linger for a producer about to hand in another). Patient jobs, the
// chunks warm streams make ahead of their reader, wait in the queue until
// they have company: they join any step that is running anyway, and start
// one of their own only when four are queued, when a reader opens their
// stream, or after Tuning.LaneGateWait. A sequential reader's
// warm streams make a chunk each time it frees one of the ahead budget,
// so their chunks come one at a time: encrypted as they came, most steps
// had one or two lanes.

// laneQueue is the jobs handed in and not yet in a lane.
type laneQueue []*laneJob

// urgent reports whether some queued job must start now (impatient,
// wanted, or waited long enough), and else when the first patient one
// will have waited long enough.
func (q laneQueue) urgent(now time.Time, wait time.Duration) (bool, time.Time) {
	var first time.Time
	for _, j := range q {
		if !j.patient || (j.wanted != nil && j.wanted.Load()) || now.Sub(j.since) >= wait {
			return true, time.Time{}
		}
		if first.IsZero() || j.since.Before(first) {
			first = j.since
		}
	}
	return len(q) >= maxLanes, first.Add(wait)
}

// take moves up to room jobs into lanes, the urgent ones first, then the
// oldest.
func (q *laneQueue) take(active []*laneJob, now time.Time, wait time.Duration) []*laneJob {
	slices.SortStableFunc(*q, func(a, b *laneJob) int {
		ua, ub := a.urgentAt(now, wait), b.urgentAt(now, wait)
		switch {
		case ua && !ub:
			return -1
		case ub && !ua:
			return 1
		}
		return a.since.Compare(b.since)
	})
	n := min(maxLanes-len(active), len(*q))
	active = append(active, (*q)[:n]...)
	clear((*q)[:n])
	*q = slices.Delete(*q, 0, n)
	return active
}

func (j *laneJob) urgentAt(now time.Time, wait time.Duration) bool {
	return !j.patient || (j.wanted != nil && j.wanted.Load()) || now.Sub(j.since) >= wait
}

// runLanes is the engine: it advances up to maxLanes jobs by one slice per
// step, with one lane when alone.
func runLanes(in <-chan *laneJob) {
	var (
		active  []*laneJob
		queue   laneQueue
		l       cbcLanes
		scratch []byte // what idle lanes encrypt
		timer   = time.NewTimer(time.Hour)
		changed bool // a job started alone or one finished: maybe wait once
	)
	timer.Stop()
	arrive := func(j *laneJob) {
		j.since = time.Now()
		queue = append(queue, j)
	}
	drain := func() {
		for {
			select {
			case j := <-in:
				arrive(j)
			default:
				return
			}
		}
	}
	for {
		drain()
		if len(active) == 0 {
			// Idle: start when a queued job must, else wait for one more
			// job, a poke, or the first patient job's time.
			t := tun()
			go_, at := queue.urgent(time.Now(), t.LaneGateWait)
			if !go_ {
				var deadline <-chan time.Time
				if len(queue) > 0 {
					timer.Reset(time.Until(at))
					deadline = timer.C
				}
				select {
				case j := <-in:
					arrive(j)
				case <-lanePoke:
				case <-deadline:
				}
				timer.Stop()
				continue
			}
			changed = true
		}
		active = queue.take(active, time.Now(), tun().LaneGateWait)
		if changed && len(active) < maxLanes && int(producing.Load()) > len(active)+len(queue) {
			// Another stream is filling its chunk and a lane costs as
			// much alone as with company: wait a little for it, once per
			// change, so a stream stuck on its store slows no other much.
			timer.Reset(tun().LaneLinger)
			select {
			case j := <-in:
				arrive(j)
				drain()
				active = queue.take(active, time.Now(), tun().LaneGateWait)
			case <-timer.C:
			}
			timer.Stop()
		}
		step := tun().LaneSlice
		if len(scratch) < step {
			scratch = make([]byte, step)
		}
		for _, j := range active {
			step = min(step, len(j.buf))
		}
		laneBytes[len(active)-1].Add(int64(step * len(active)))
		if len(active) == 1 {
			j := active[0]
			cbcEncAsm(j.rk, &j.chain, &j.buf[0], &j.buf[0], step)
		} else {
			for i := range maxLanes {
				if i < len(active) {
					j := active[i]
					l.buf[i], l.rk[i], l.chain[i] = &j.buf[0], j.rk, j.chain
				} else {
					l.buf[i], l.rk[i] = &scratch[0], active[0].rk
				}
			}
			cbcEnc4Asm(&l, step)
			for i, j := range active {
				j.chain = l.chain[i]
			}
		}
		n := len(active)
		active = advanceLanes(active, step)
		changed = len(active) < n
	}
}

// advanceLanes moves every job on by step bytes and lets the finished
// ones go.
func advanceLanes(active []*laneJob, step int) []*laneJob {
	kept := active[:0]
	for _, j := range active {
		j.buf = j.buf[step:]
		if len(j.buf) == 0 {
			j.done <- struct{}{}
			continue
		}
		kept = append(kept, j)
	}
	clear(active[len(kept):])
	return kept
}
