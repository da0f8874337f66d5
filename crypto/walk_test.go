package crypto

import (
	"context"
	"math/rand"
	"sync"
	"testing"
)

// TestConcurrentDeepReadsShareChain: readers that land at once deep in a
// CBC part nobody has read encrypt its prefix once between them, not once
// each: one walks the chain, the others wait and start from its
// checkpoints.
func TestConcurrentDeepReadsShareChain(t *testing.T) {
	r := rand.New(rand.NewSource(20))
	for _, alg := range []Algorithm{AES128CBC, SM4CBC} {
		const size, readers, req = 4 << 20, 8, 4096
		f, src := onePart(t, r, alg, size, testIV)
		want := openssl(t, alg, testKey, testIV, src.data)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for g := 0; g < readers; g++ {
			wg.Add(1)
			go func(off int64) {
				defer wg.Done()
				rd := f.NewReader()
				defer rd.Close()
				<-start
				checkRead(t, rd, want, off, req)
			}(f.Size() - 1 - int64(g)*50000)
		}
		close(start)
		wg.Wait()
		// One prefix, plus for each reader at most a checkpoint interval
		// and its request.
		if read, bound := src.read.Load(), int64(size+readers*(checkpointEvery+req+blockSize)); read > bound {
			t.Errorf("%s: %d readers deep in a fresh part read %d plaintext bytes; sharing the chain bounds it to %d",
				alg, readers, read, bound)
		}
	}
}

// TestWalkWaitCanceled: a reader waiting for another's walk of the chain
// gives up when its request is canceled.
func TestWalkWaitCanceled(t *testing.T) {
	r := rand.New(rand.NewSource(21))
	f, _ := onePart(t, r, AES128CBC, 1<<20, testIV)
	cps := f.parts[0].cps
	release, err := cps.claimWalk(context.Background(), 512<<10)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	rd := f.NewReader()
	defer rd.Close()
	if _, err := rd.ReadAt(ctx, make([]byte, 16), 512<<10); err == nil {
		t.Fatal("a canceled read waiting for the chain walk succeeded")
	}
	// Near a known checkpoint no one waits.
	if _, err := rd.ReadAt(context.Background(), make([]byte, 16), 1000); err != nil {
		t.Fatal(err)
	}
}
