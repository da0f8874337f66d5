package crypto

import (
	"sync/atomic"

	"github.com/mpcfs/mpcfs/tuning"
)

// crypto's budgets (the warm streams' ahead budget, the lane engine, the
// chunk buffer pool) are shared by every File of the process, so crypto
// takes its part of a tuning.Tuning once per process, not per File.
// Structures that must not change under their users capture the value
// they were made with: a File's CBC checkpoints their spacing, a producer
// its budget.
type settings struct {
	tuning.Tuning
	// aheadTokens is the shared warm budget: a token per chunk made
	// beyond a warm stream's own queue slot.
	aheadTokens chan struct{}
	// bufs holds the chunk buffers, at most Tuning.BufferMemory of them.
	bufs *bufferPool
}

var current atomic.Pointer[settings]

// The defaults are in force from variable initialization on, before any
// init function runs: the lane engine's goroutine, started by one, reads
// them at once.
var _ = func() bool {
	if err := SetTuning(tuning.Default()); err != nil {
		panic(err)
	}
	return true
}()

// SetTuning makes t the tuning of Files made and streams started from now
// on. The daemon calls it once at start; tests and the bench to try values.
func SetTuning(t tuning.Tuning) error {
	if err := t.Validate(); err != nil {
		return err
	}
	tokens := max(t.WarmBudget/int64(t.ChunkSize), 0)
	old := current.Swap(&settings{Tuning: t, aheadTokens: make(chan struct{}, tokens),
		bufs: newBufferPool(t.ChunkSize, t.BufferMemory)})
	if old != nil {
		old.bufs.retire()
	}
	return nil
}

// Tuning returns the tuning in force.
func Tuning() tuning.Tuning { return current.Load().Tuning }

// tun is the settings in force.
func tun() *settings { return current.Load() }
