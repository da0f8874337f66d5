package crypto

import (
	"bytes"
	"crypto/aes"
	stdcipher "crypto/cipher"
	"fmt"
	"math/rand"
	"testing"
)

// The AES-128-CBC block (newCBCBlock: the AES-NI loop on amd64) must give
// crypto/cipher's CBC output byte for byte: for random keys, IVs and
// lengths, out of place and in place, in one call or split, and carry the
// chain across calls and SetIV as the stdlib encrypter does.

// cbcPair returns the mode under test and the stdlib reference.
func cbcPair(t *testing.T, key, iv []byte) (got, want stdcipher.BlockMode) {
	t.Helper()
	b, err := newCBCBlock(key)
	if err != nil {
		t.Fatal(err)
	}
	ref, _ := aes.NewCipher(key)
	return stdcipher.NewCBCEncrypter(b, iv), stdcipher.NewCBCEncrypter(ref, iv)
}

func TestAsmCBCMatchesStdlib(t *testing.T) {
	r := rand.New(rand.NewSource(7))
	for i := range 300 {
		key, iv := randBytes(r, 16), randBytes(r, 16)
		n := r.Intn(65) * 16
		if i%50 == 0 {
			n = 4096 * 16 // a long run too
		}
		src := randBytes(r, n)
		got, want := cbcPair(t, key, iv)
		wantOut := make([]byte, n)
		want.CryptBlocks(wantOut, src)

		// One call, out of place; then the carried chain on one more block.
		out := make([]byte, n)
		got.CryptBlocks(out, src)
		checkSame(t, fmt.Sprintf("case %d, %d bytes, one call", i, n), out, wantOut)
		more := randBytes(r, 16)
		a, b := make([]byte, 16), make([]byte, 16)
		got.CryptBlocks(a, more)
		want.CryptBlocks(b, more)
		checkSame(t, fmt.Sprintf("case %d: block after the call", i), a, b)

		// In place, in random pieces at block boundaries.
		got, _ = cbcPair(t, key, iv)
		buf := bytes.Clone(src)
		for off := 0; off < n; {
			k := min(n-off, r.Intn(8)*16)
			got.CryptBlocks(buf[off:off+k], buf[off:off+k])
			off += k
		}
		checkSame(t, fmt.Sprintf("case %d, %d bytes, in place split", i, n), buf, wantOut)
	}
}

// TestAsmCBCSetIV: SetIV restarts the chain, as the stdlib's does.
func TestAsmCBCSetIV(t *testing.T) {
	r := rand.New(rand.NewSource(8))
	key, iv, iv2, src := randBytes(r, 16), randBytes(r, 16), randBytes(r, 16), randBytes(r, 160)
	got, want := cbcPair(t, key, iv)
	out, ref := make([]byte, 160), make([]byte, 160)
	got.CryptBlocks(out, src)
	type ivSetter interface{ SetIV([]byte) }
	got.(ivSetter).SetIV(iv2)
	want.(ivSetter).SetIV(iv2)
	got.CryptBlocks(out, src)
	want.CryptBlocks(ref, src)
	checkSame(t, "after SetIV", out, ref)
}

// TestAsmCBCMisuse: bad lengths and overlaps panic as in the stdlib.
func TestAsmCBCMisuse(t *testing.T) {
	buf := make([]byte, 64)
	for name, call := range map[string]func(stdcipher.BlockMode){
		"partial block": func(m stdcipher.BlockMode) { m.CryptBlocks(buf, buf[:15]) },
		"short dst":     func(m stdcipher.BlockMode) { m.CryptBlocks(buf[:16], buf[:32]) },
		"overlap":       func(m stdcipher.BlockMode) { m.CryptBlocks(buf[16:], buf[:48]) },
	} {
		got, want := cbcPair(t, testKey, testIV)
		if g, w := panicOf(call, got), panicOf(call, want); g == nil || fmt.Sprint(g) != fmt.Sprint(w) {
			t.Errorf("%s: panic %v, stdlib panics %v", name, g, w)
		}
	}
}

func panicOf(call func(stdcipher.BlockMode), m stdcipher.BlockMode) (p any) {
	defer func() { p = recover() }()
	call(m)
	return nil
}

func checkSame(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		t.Fatalf("%s: ciphertext differs from crypto/cipher CBC", what)
	}
}
