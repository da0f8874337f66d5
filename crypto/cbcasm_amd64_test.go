package crypto

import (
	"bytes"
	"crypto/aes"
	stdcipher "crypto/cipher"
	"encoding/hex"
	"math/rand"
	"testing"
)

// TestExpandKey128 checks the key schedule: the FIPS-197 appendix A.1
// vector, and for random keys one block of the asm loop with a zero chain
// (= ECB) against crypto/aes's Encrypt.
func TestExpandKey128(t *testing.T) {
	var rk [176]byte
	key, _ := hex.DecodeString("2b7e151628aed2a6abf7158809cf4f3c")
	expandKey128(&rk, key)
	if got := hex.EncodeToString(rk[160:]); got != "d014f9a8c9ee2589e13f0cc8b6630ca6" {
		t.Fatalf("FIPS-197 A.1: last round key %s", got)
	}
	if !hasAESNI {
		t.Skip("no AES-NI: cbcEncAsm is never used here")
	}
	r := rand.New(rand.NewSource(9))
	for range 1000 {
		key, src := randBytes(r, 16), randBytes(r, 16)
		expandKey128(&rk, key)
		var chain [16]byte
		got, want := make([]byte, 16), make([]byte, 16)
		cbcEncAsm(&rk, &chain, &got[0], &src[0], 16)
		ref, _ := aes.NewCipher(key)
		ref.Encrypt(want, src)
		if !bytes.Equal(got, want) || !bytes.Equal(chain[:], want) {
			t.Fatalf("key %x: ECB block %x, crypto/aes %x", key, got, want)
		}
	}
}

// TestAsmCBCUsed: crypto/cipher.NewCBCEncrypter hands AES-128-CBC parts'
// blocks to our encrypter (its cbcEncAble hook). If a Go release drops
// that hook, output stays right but the speed-up is lost: this says so.
func TestAsmCBCUsed(t *testing.T) {
	if !hasAESNI {
		t.Skip("no AES-NI: the stdlib CBC is used")
	}
	b, err := AES128CBC.newBlock(testKey)
	if err != nil {
		t.Fatal(err)
	}
	m := stdcipher.NewCBCEncrypter(b, testIV)
	if _, ok := m.(*cbcEncrypter); !ok {
		t.Fatalf("crypto/cipher.NewCBCEncrypter returned %T, not the AES-NI encrypter", m)
	}
}
