package crypto

import (
	"context"
	"sync"
)

// checkpoints are the CBC chain values of one part at the multiples of
// every (Tuning.CheckpointEvery when the part was made: the most a read
// re-encrypts once its part has been read past that point) that some
// reader has encrypted past; chains[k] is the value at plaintext offset
// k*every (chains[0] is the IV).
// A cursor only starts at a known checkpoint and records every boundary it
// crosses, so the known ones always form a prefix: a slice, 16 bytes per
// 64 KiB of plaintext at most, and O(1) to search.
type checkpoints struct {
	every  int64
	mu     sync.Mutex
	chains [][blockSize]byte
	// walk lets one reader at a time encrypt a stretch of the chain that
	// no checkpoint covers yet. Readers landing deep in a part nobody has
	// read wait for it, then start from the checkpoints it recorded,
	// instead of each encrypting the same prefix.
	walk chan struct{}
}

func newCheckpoints(iv [blockSize]byte, every int64) *checkpoints {
	return &checkpoints{every: every, chains: [][blockSize]byte{iv}, walk: make(chan struct{}, 1)}
}

// claimWalk is called before a seek to part-relative offset pos. If the
// nearest checkpoint is more than one interval before pos, it waits for
// its turn to walk the chain (or ctx) and returns the release function;
// otherwise it returns at once with a no-op release.
func (cp *checkpoints) claimWalk(ctx context.Context, pos int64) (func(), error) {
	if start, _ := cp.at(pos); pos-start <= cp.every {
		return func() {}, nil
	}
	select {
	case cp.walk <- struct{}{}:
		return func() { <-cp.walk }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// at returns the highest known checkpoint at or before pos and its chain
// value.
func (cp *checkpoints) at(pos int64) (int64, [blockSize]byte) {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	k, _ := checkpointFloor(pos, cp.every)
	k = min(k, int64(len(cp.chains)-1))
	return k * cp.every, cp.chains[k]
}

// record notes the checkpoints inside ct, whole ciphertext blocks of
// plaintext (no padding) starting at plaintext offset pos: the chain value
// at boundary b is the ciphertext block that ends at b.
func (cp *checkpoints) record(pos int64, ct []byte) {
	end := pos + int64(len(ct))
	k, _ := checkpointFloor(pos, cp.every)
	first := k + 1 // the first boundary after pos
	if first*cp.every > end {
		return // a small chunk between two boundaries: no lock taken
	}
	cp.mu.Lock()
	defer cp.mu.Unlock()
	// Start at the first unknown boundary; a gap (first > len) cannot
	// happen since cursors start at known checkpoints, but would record
	// nothing rather than break the prefix.
	for k := max(first, int64(len(cp.chains))); k == int64(len(cp.chains)) && k*cp.every <= end; k++ {
		b := k*cp.every - pos
		cp.chains = append(cp.chains, [blockSize]byte(ct[b-blockSize:b]))
	}
}
