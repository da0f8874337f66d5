package crypto

import (
	"crypto/aes"
	stdcipher "crypto/cipher"
	"fmt"

	"github.com/emmansun/gmsm/sm4"
)

// Algorithm is an encryption algorithm of the MPC API.
type Algorithm string

// The algorithms of the MPC API.
const (
	AES128CTR Algorithm = "AES-128-CTR" // the default
	AES128CBC Algorithm = "AES-128-CBC"
	SM4CBC    Algorithm = "SM4CBC"
)

// ParseAlgorithm maps the request's algorithm name; "" is the default, CTR.
// Names are exact: a near miss is an error, not a guess.
func ParseAlgorithm(s string) (Algorithm, error) {
	switch a := Algorithm(s); a {
	case "":
		return AES128CTR, nil
	case AES128CTR, AES128CBC, SM4CBC:
		return a, nil
	}
	return "", fmt.Errorf("unknown algorithm %q (want AES-128-CTR, AES-128-CBC or SM4CBC)", s)
}

// HLSMethod is the EXT-X-KEY METHOD value: RFC 8216 calls AES-128-CBC
// plain "AES-128".
func (a Algorithm) HLSMethod() string {
	switch a {
	case AES128CBC:
		return "AES-128"
	case SM4CBC:
		return "SM4-CBC"
	}
	return "AES-128-CTR"
}

// cbc reports whether the algorithm chains blocks with PKCS#7 padding.
func (a Algorithm) cbc() bool { return a == AES128CBC || a == SM4CBC }

// EncryptedSize is the ciphertext size of n plaintext bytes: PKCS#7 always
// adds 1..16 bytes to CBC (a full block when n is a multiple of 16); CTR
// and clear parts keep the size.
func (a Algorithm) EncryptedSize(n int64) int64 {
	if a.cbc() {
		return paddedSize(n)
	}
	return n
}

// newBlock makes the block cipher. Errors never show the key.
func (a Algorithm) newBlock(key []byte) (stdcipher.Block, error) {
	if len(key) != blockSize {
		return nil, fmt.Errorf("key must be %d bytes, got %d", blockSize, len(key))
	}
	switch a {
	case AES128CBC:
		return newCBCBlock(key) // its CBC mode is an AES-NI loop: cbcasm_amd64.go
	case AES128CTR:
		return aes.NewCipher(key)
	case SM4CBC:
		return sm4.NewCipher(key)
	}
	return nil, fmt.Errorf("unknown algorithm %q", string(a))
}
