package crypto

import (
	"bytes"
	"crypto/aes"
	stdcipher "crypto/cipher"
	"math/rand"
	"sync"
	"testing"
)

// TestCBCEnc4Asm: each of the four lanes, with its own key, chain and
// length of run, is what the standard library's CBC gives, and each chain
// carries over from one call to the next.
func TestCBCEnc4Asm(t *testing.T) {
	if !hasAESNI {
		t.Skip("no AES-NI")
	}
	r := rand.New(rand.NewSource(41))
	for range 50 {
		var l cbcLanes
		var rks [4][176]byte
		plain, got := make([][]byte, 4), make([][]byte, 4)
		modes := make([]stdcipher.BlockMode, 4)
		for i := range 4 {
			key, iv := randBytes(r, 16), randBytes(r, 16)
			expandKey128(&rks[i], key)
			block, _ := aes.NewCipher(key)
			modes[i] = stdcipher.NewCBCEncrypter(block, iv)
			l.rk[i], l.chain[i] = &rks[i], [16]byte(iv)
		}
		for range 3 {
			n := 16 * (1 + r.Intn(300))
			for i := range 4 {
				plain[i] = randBytes(r, n)
				got[i] = bytes.Clone(plain[i])
				l.buf[i] = &got[i][0]
			}
			cbcEnc4Asm(&l, n)
			for i := range 4 {
				want := make([]byte, n)
				modes[i].CryptBlocks(want, plain[i])
				if !bytes.Equal(got[i], want) || l.chain[i] != [16]byte(want[n-16:]) {
					t.Fatalf("lane %d, %d bytes: differs from crypto/cipher CBC", i, n)
				}
			}
		}
	}
}

// TestLaneEngineConcurrent: many goroutines push chunks of different
// lengths and keys through the engine at once (so lanes are shared and
// join mid-chunk); every chain comes out as the standard library's.
func TestLaneEngineConcurrent(t *testing.T) {
	if !hasAESNI {
		t.Skip("no AES-NI")
	}
	var wg sync.WaitGroup
	errs := make(chan string, 16)
	for g := range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewSource(int64(100 + g)))
			key, iv := randBytes(r, 16), randBytes(r, 16)
			var rk [176]byte
			expandKey128(&rk, key)
			block, _ := aes.NewCipher(key)
			ref := stdcipher.NewCBCEncrypter(block, iv)
			j := laneJob{rk: &rk, chain: [16]byte(iv)}
			for range 40 {
				plain := randBytes(r, 16*r.Intn(12000)) // 0 to ~190 KiB: several slices
				got, want := bytes.Clone(plain), make([]byte, len(plain))
				j.buf = got
				encryptLanes(&j)
				ref.CryptBlocks(want, plain)
				if !bytes.Equal(got, want) {
					errs <- "a chunk through the engine differs from crypto/cipher CBC"
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
}

// BenchmarkAsmCBC4Lanes is BenchmarkAsmCBC with four chains at once: the
// aggregate MB/s is what the engine can give four readers.
func BenchmarkAsmCBC4Lanes(b *testing.B) {
	var rk [176]byte
	expandKey128(&rk, testKey)
	var l cbcLanes
	for i := range 4 {
		buf := make([]byte, benchBuf/4)
		l.buf[i], l.rk[i] = &buf[0], &rk
	}
	b.SetBytes(benchBuf)
	for b.Loop() {
		cbcEnc4Asm(&l, benchBuf/4)
	}
}
