package crypto

import (
	stdcipher "crypto/cipher"
	"sync/atomic"
	"time"
)

// The CBC lane engine. CBC encryption is serial within a chain: on one
// core AESENC's latency, not its throughput, bounds a single stream
// (~1.4 GB/s here), while four interleaved chains run at about four times
// that (cbcEnc4Asm). A sequential reader has more than one chain in
// flight: the segments after the one it reads are warmed ahead of it
// (warm.go), and concurrent readers have one each. Producers hand their
// AES-128-CBC chunks to one engine goroutine, which encrypts up to four
// of them side by side, a slice of each at a time, so that a chunk
// arriving while another is being encrypted joins it at the next slice.
//
// A producer spends most of a chunk's time reading its plaintext from
// the store, so two chunks rarely arrive together by chance: when one is
// alone and another producer is filling its chunk, the engine waits up
// to lingerMax for it. Waiting costs no CPU; a lone lane costs as much
// CPU as four. The producers then fall into step.
//
// Only producers (read-ahead) use it: a synchronous read (a seek) would
// pay two goroutine switches for no company.

const (
	maxLanes  = 4
	laneSlice = 64 << 10 // how much of each lane one step encrypts
	lingerMax = 300 * time.Microsecond
)

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
}

// laneJobs feeds the engine; buffered so that handing in a job never
// waits on the engine's step (the producer waits for the result anyway).
var laneJobs = make(chan *laneJob, 64)

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

// runLanes is the engine: it takes the jobs waiting (up to maxLanes) and
// advances all of them by one slice per step, with one lane when alone.
func runLanes(in <-chan *laneJob) {
	var (
		active  []*laneJob
		l       cbcLanes
		scratch = make([]byte, laneSlice) // what idle lanes encrypt
	)
	linger := time.NewTimer(time.Hour)
	linger.Stop()
	for {
		if len(active) == 0 {
			active = append(active, <-in)
		}
		if len(active) == 1 && producing.Load() > 1 {
			// Another stream is filling its chunk: a single lane costs
			// what four do, so wait a little for it to join.
			linger.Reset(lingerMax)
			select {
			case j := <-in:
				active = append(active, j)
				linger.Stop()
			case <-linger.C:
			}
		}
	fill:
		for len(active) < maxLanes {
			select {
			case j := <-in:
				active = append(active, j)
			default:
				break fill
			}
		}
		step := laneSlice
		for _, j := range active {
			step = min(step, len(j.buf))
		}
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
		active = advanceLanes(active, step)
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
