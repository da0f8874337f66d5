package crypto

import (
	"crypto/aes"
	stdcipher "crypto/cipher"
	"unsafe"

	"golang.org/x/sys/cpu"
)

// AES-128-CBC encryption with AES-NI. crypto/cipher's CBC encrypter calls
// the block cipher once per 16-byte block (re-loading the round keys each
// time); CBC encryption is serial, so that call overhead is most of its
// cost. cbcEncAsm keeps the 11 round keys in X registers and the chain in
// another for a whole CryptBlocks call.

// hasAESNI: without AES-NI (or SSE2 for PXOR) newCBCBlock falls back to
// the plain stdlib block.
var hasAESNI = cpu.X86.HasAES && cpu.X86.HasSSE2

// cbcEncAsm encrypts n bytes (a multiple of 16) from src to dst in CBC
// mode with the expanded key rk, starting from and updating *chain.
//
//go:noescape
func cbcEncAsm(rk *[176]byte, chain *[16]byte, dst, src *byte, n int)

// cbcBlock is the crypto/aes block plus its expanded key. Implementing
// NewCBCEncrypter(iv) makes crypto/cipher.NewCBCEncrypter(b, iv) return
// our encrypter (its cbcEncAble hook), so callers need no change; every
// other use (Encrypt, Decrypt) goes to the stdlib block.
type cbcBlock struct {
	stdcipher.Block
	rk [176]byte
}

// newCBCBlock is the block cipher of AES-128-CBC parts.
func newCBCBlock(key []byte) (stdcipher.Block, error) {
	b, err := aes.NewCipher(key)
	if err != nil || !hasAESNI || len(key) != 16 {
		return b, err
	}
	cb := &cbcBlock{Block: b}
	expandKey128(&cb.rk, key)
	return cb, nil
}

// NewCBCEncrypter is what crypto/cipher.NewCBCEncrypter calls; it has
// already checked len(iv) == BlockSize.
func (b *cbcBlock) NewCBCEncrypter(iv []byte) stdcipher.BlockMode {
	return &cbcEncrypter{rk: &b.rk, chain: [16]byte(iv)}
}

// cbcEncrypter is a cipher.BlockMode like the stdlib's: the chain value
// (last ciphertext block) carries over between CryptBlocks calls.
type cbcEncrypter struct {
	rk    *[176]byte
	chain [16]byte
}

func (x *cbcEncrypter) BlockSize() int { return 16 }

// CryptBlocks panics on the same misuse as the stdlib's, with its messages.
func (x *cbcEncrypter) CryptBlocks(dst, src []byte) {
	if len(src)%16 != 0 {
		panic("crypto/cipher: input not full blocks")
	}
	if len(dst) < len(src) {
		panic("crypto/cipher: output smaller than input")
	}
	if len(src) == 0 {
		return
	}
	// Block i is read before block i is written, but a dst that starts
	// past src would overwrite input not yet read.
	if d, s := uintptr(unsafe.Pointer(&dst[0])), uintptr(unsafe.Pointer(&src[0])); d != s &&
		d < s+uintptr(len(src)) && s < d+uintptr(len(src)) {
		panic("crypto/cipher: invalid buffer overlap")
	}
	cbcEncAsm(x.rk, &x.chain, &dst[0], &src[0], len(src))
}

// SetIV resets the chain, as the stdlib encrypter's SetIV does.
func (x *cbcEncrypter) SetIV(iv []byte) {
	if len(iv) != 16 {
		panic("cipher: incorrect length IV")
	}
	x.chain = [16]byte(iv)
}

// expandKey128 is the FIPS-197 key expansion (section 5.2) for a 16-byte
// key: 44 words w[i], stored big-endian, which is the byte order AESENC
// takes its round keys in.
func expandKey128(rk *[176]byte, key []byte) {
	copy(rk[:16], key)
	rcon := byte(1)
	for i := 16; i < 176; i += 4 {
		t := [4]byte(rk[i-4 : i])
		if i%16 == 0 { // RotWord, SubWord, Rcon
			t = [4]byte{sbox[t[1]] ^ rcon, sbox[t[2]], sbox[t[3]], sbox[t[0]]}
			rcon = rcon<<1 ^ (rcon>>7)*0x1b
		}
		for j := range 4 {
			rk[i+j] = rk[i-16+j] ^ t[j]
		}
	}
}

// sbox is the AES S-box (FIPS-197 figure 7), for the key expansion only.
var sbox = [256]byte{
	0x63, 0x7c, 0x77, 0x7b, 0xf2, 0x6b, 0x6f, 0xc5, 0x30, 0x01, 0x67, 0x2b, 0xfe, 0xd7, 0xab, 0x76,
	0xca, 0x82, 0xc9, 0x7d, 0xfa, 0x59, 0x47, 0xf0, 0xad, 0xd4, 0xa2, 0xaf, 0x9c, 0xa4, 0x72, 0xc0,
	0xb7, 0xfd, 0x93, 0x26, 0x36, 0x3f, 0xf7, 0xcc, 0x34, 0xa5, 0xe5, 0xf1, 0x71, 0xd8, 0x31, 0x15,
	0x04, 0xc7, 0x23, 0xc3, 0x18, 0x96, 0x05, 0x9a, 0x07, 0x12, 0x80, 0xe2, 0xeb, 0x27, 0xb2, 0x75,
	0x09, 0x83, 0x2c, 0x1a, 0x1b, 0x6e, 0x5a, 0xa0, 0x52, 0x3b, 0xd6, 0xb3, 0x29, 0xe3, 0x2f, 0x84,
	0x53, 0xd1, 0x00, 0xed, 0x20, 0xfc, 0xb1, 0x5b, 0x6a, 0xcb, 0xbe, 0x39, 0x4a, 0x4c, 0x58, 0xcf,
	0xd0, 0xef, 0xaa, 0xfb, 0x43, 0x4d, 0x33, 0x85, 0x45, 0xf9, 0x02, 0x7f, 0x50, 0x3c, 0x9f, 0xa8,
	0x51, 0xa3, 0x40, 0x8f, 0x92, 0x9d, 0x38, 0xf5, 0xbc, 0xb6, 0xda, 0x21, 0x10, 0xff, 0xf3, 0xd2,
	0xcd, 0x0c, 0x13, 0xec, 0x5f, 0x97, 0x44, 0x17, 0xc4, 0xa7, 0x7e, 0x3d, 0x64, 0x5d, 0x19, 0x73,
	0x60, 0x81, 0x4f, 0xdc, 0x22, 0x2a, 0x90, 0x88, 0x46, 0xee, 0xb8, 0x14, 0xde, 0x5e, 0x0b, 0xdb,
	0xe0, 0x32, 0x3a, 0x0a, 0x49, 0x06, 0x24, 0x5c, 0xc2, 0xd3, 0xac, 0x62, 0x91, 0x95, 0xe4, 0x79,
	0xe7, 0xc8, 0x37, 0x6d, 0x8d, 0xd5, 0x4e, 0xa9, 0x6c, 0x56, 0xf4, 0xea, 0x65, 0x7a, 0xae, 0x08,
	0xba, 0x78, 0x25, 0x2e, 0x1c, 0xa6, 0xb4, 0xc6, 0xe8, 0xdd, 0x74, 0x1f, 0x4b, 0xbd, 0x8b, 0x8a,
	0x70, 0x3e, 0xb5, 0x66, 0x48, 0x03, 0xf6, 0x0e, 0x61, 0x35, 0x57, 0xb9, 0x86, 0xc1, 0x1d, 0x9e,
	0xe1, 0xf8, 0x98, 0x11, 0x69, 0xd9, 0x8e, 0x94, 0x9b, 0x1e, 0x87, 0xe9, 0xce, 0x55, 0x28, 0xdf,
	0x8c, 0xa1, 0x89, 0x0d, 0xbf, 0xe6, 0x42, 0x68, 0x41, 0x99, 0x2d, 0x0f, 0xb0, 0x54, 0xbb, 0x16,
}

// cbcLanes are four independent CBC chains for cbcEnc4Asm (its assembly
// depends on this layout).
type cbcLanes struct {
	buf   [4]*byte
	rk    [4]*[176]byte
	chain [4][16]byte
}

// cbcEnc4Asm encrypts n bytes (a multiple of 16, > 0) in place in each of
// the four lanes.
//
//go:noescape
func cbcEnc4Asm(l *cbcLanes, n int)
