package crypto

import (
	"crypto/aes"
	stdcipher "crypto/cipher"
	"testing"
)

func TestBlockArithmetic(t *testing.T) {
	for _, c := range []struct{ n, start, up, padded int64 }{
		{0, 0, 0, 16},
		{1, 0, 16, 16},
		{15, 0, 16, 16},
		{16, 16, 16, 32},
		{17, 16, 32, 32},
		{1<<20 - 1, 1<<20 - 16, 1 << 20, 1 << 20},
		{1 << 20, 1 << 20, 1 << 20, 1<<20 + 16},
	} {
		if got := blockStart(c.n); got != c.start {
			t.Errorf("blockStart(%d) = %d, want %d", c.n, got, c.start)
		}
		if got := alignUp(c.n); got != c.up {
			t.Errorf("alignUp(%d) = %d, want %d", c.n, got, c.up)
		}
		if got := paddedSize(c.n); got != c.padded {
			t.Errorf("paddedSize(%d) = %d, want %d", c.n, got, c.padded)
		}
	}
}

func TestLocate(t *testing.T) {
	src := func(n int64) Part { return Part{Src: (&memSource{data: make([]byte, n)}).open, PlainSize: n} }
	key := make([]byte, 16)
	cbc := func(n int64) Part {
		p := src(n)
		p.Alg, p.Key, p.IV = AES128CBC, key, key
		return p
	}
	// parts: clear 10 [0,10), empty, CBC 20 -> 32 [10,42), clear 5 [42,47)
	f := newTestFile(t, src(10), src(0), cbc(20), src(5))
	for _, c := range []struct {
		off      int64
		idx      int
		rel      int64
		describe string
	}{
		{0, 0, 0, "first byte"},
		{9, 0, 9, "last byte of the first part"},
		{10, 2, 0, "an empty part holds nothing: the next one starts"},
		{41, 2, 31, "a CBC part's padding block"},
		{42, 3, 0, "after padding"},
		{46, 3, 4, "last byte"},
		{47, 4, 0, "the end: past the last part"},
	} {
		idx, rel := f.locate(c.off)
		if idx != c.idx || rel != c.rel {
			t.Errorf("locate(%d) = part %d +%d, want part %d +%d (%s)", c.off, idx, rel, c.idx, c.rel, c.describe)
		}
	}
}

func TestRequestEndAndUnasked(t *testing.T) {
	for _, c := range []struct{ rel, want, size, end int64 }{
		{0, 1, 100, 16},
		{5, 11, 100, 16},
		{5, 12, 100, 32},
		{90, 100, 100, 100}, // never past the part
		{96, 4, 100, 100},
	} {
		if got := requestEnd(c.rel, c.want, c.size); got != c.end {
			t.Errorf("requestEnd(%d, %d, %d) = %d, want %d", c.rel, c.want, c.size, got, c.end)
		}
	}
	for _, c := range []struct{ off, n, pos, want, unasked int64 }{
		{0, 16, 0, 16, 0},
		{0, 16, 5, 3, 13},   // 5 before, 8 after
		{16, 32, 0, 100, 0}, // all asked
		{32, 16, 40, 100, 8},
	} {
		if got := unasked(c.off, c.n, c.pos, c.want); got != c.unasked {
			t.Errorf("unasked(%d, %d, %d, %d) = %d, want %d", c.off, c.n, c.pos, c.want, got, c.unasked)
		}
	}
}

func TestCheckpointFloor(t *testing.T) {
	for _, c := range []struct{ rel, every, k, at int64 }{
		{0, 64, 0, 0}, {63, 64, 0, 0}, {64, 64, 1, 64}, {200, 64, 3, 192},
	} {
		if k, at := checkpointFloor(c.rel, c.every); k != c.k || at != c.at {
			t.Errorf("checkpointFloor(%d, %d) = %d, %d; want %d, %d", c.rel, c.every, k, at, c.k, c.at)
		}
	}
}

// TestCTRCounter: the counter of block i is what the standard library's
// CTR stream reaches after i blocks, also across the carry from the low
// 64 bits (negative control: without the carry the last case differs).
func TestCTRCounter(t *testing.T) {
	block, _ := aes.NewCipher(make([]byte, 16))
	for _, c := range []struct {
		iv [16]byte
		i  int64
	}{
		{[16]byte{}, 0},
		{[16]byte{}, 5},
		{[16]byte{15: 0xfe}, 3},
		{[16]byte{7: 1, 8: 0xff, 9: 0xff, 10: 0xff, 11: 0xff, 12: 0xff, 13: 0xff, 14: 0xff, 15: 0xfe}, 4}, // carries into the high half
	} {
		// block i of a stream started at iv == block 0 of a stream at ctrCounter(iv, i)
		ivb := c.iv
		long := make([]byte, 16*(c.i+1))
		stdcipher.NewCTR(block, ivb[:]).XORKeyStream(long, long)
		ctr := ctrCounter(c.iv, c.i)
		one := make([]byte, 16)
		stdcipher.NewCTR(block, ctr[:]).XORKeyStream(one, one)
		if string(one) != string(long[16*c.i:]) {
			t.Errorf("ctrCounter(%x, %d) = %x: its keystream is not the stream's block %d", c.iv, c.i, ctr, c.i)
		}
	}
}
