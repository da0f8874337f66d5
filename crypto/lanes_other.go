//go:build !amd64

package crypto

import (
	stdcipher "crypto/cipher"
	"sync/atomic"
)

// Off amd64 there is no lane engine (lanes_amd64.go): CBC chunks are
// encrypted by the stdlib in the producer's goroutine.

type laneJob struct {
	rk      *[176]byte
	chain   [16]byte
	buf     []byte
	patient bool
	wanted  *atomic.Bool
}

func pokeLanes() {}

func laneKey(stdcipher.Block) *[176]byte { return nil }

func encryptLanes(*laneJob) { panic("crypto: no CBC lane engine on this architecture") }

// producing is counted by producers for the amd64 engine; unused here.
var producing atomic.Int32

// LaneStats is all zeros: there is no engine here.
func LaneStats() [4]int64 { return [4]int64{} }
