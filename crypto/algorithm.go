// Package crypto turns plaintext HLS segments into ciphertext on the fly,
// at any offset, exactly as encrypting the whole segment would.
//
// The model: an output File is a concatenation of Parts. A Part is a byte
// range of a source object (read through a RangeSource, i.e. ranged GETs),
// either copied clear or encrypted as one unit: AES-128-CBC or SM4-CBC with
// PKCS#7 padding, or AES-128-CTR. An HLS segment is one Part; a single-file
// EXT-X-BYTERANGE output is one Part per range.
//
// Random access: CTR seeks in O(1). CBC is a chain, so the File records the
// chain value every 64 KiB (a checkpoint, 16 bytes) as any reader encrypts
// past it; a read then starts at the nearest checkpoint at or before it and
// costs at most 64 KiB of extra encryption. The first read deep into a part
// nobody has read yet must encrypt the prefix once: inherent to CBC.
//
// Sequential reads: each Reader (one per open file) notices sequential
// access and starts a producer goroutine that fetches plaintext in growing
// windows (1 MiB doubling to 16 MiB, one ranged GET each) and encrypts
// ahead. Its memory is bounded: at most chunkQueue+1 chunks of chunkSize in
// flight plus the two the reader holds, about 2.5 MiB per open file.
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

// ParseAlgorithm maps the request's algorithm ("" = the default, CTR).
func ParseAlgorithm(s string) (Algorithm, error) {
	switch a := Algorithm(s); a {
	case "":
		return AES128CTR, nil
	case AES128CTR, AES128CBC, SM4CBC:
		return a, nil
	}
	return "", fmt.Errorf("unknown algorithm %q (want AES-128-CTR, AES-128-CBC or SM4CBC)", s)
}

// HLSMethod is the EXT-X-KEY METHOD value for the algorithm.
func (a Algorithm) HLSMethod() string {
	switch a {
	case AES128CBC:
		return "AES-128" // RFC 8216
	case SM4CBC:
		return "SM4-CBC"
	}
	return "AES-128-CTR"
}

// cbc reports whether the algorithm chains blocks with PKCS#7 padding.
func (a Algorithm) cbc() bool { return a == AES128CBC || a == SM4CBC }

// EncryptedSize is the ciphertext size of n plaintext bytes: PKCS#7 always
// adds 1..16 bytes to CBC; CTR keeps the size.
func (a Algorithm) EncryptedSize(n int64) int64 {
	if a.cbc() {
		return n + blockSize - n%blockSize
	}
	return n
}

const blockSize = 16

func (a Algorithm) newBlock(key []byte) (stdcipher.Block, error) {
	if len(key) != blockSize {
		return nil, fmt.Errorf("key must be %d bytes, got %d", blockSize, len(key))
	}
	switch a {
	case AES128CBC, AES128CTR:
		return aes.NewCipher(key)
	case SM4CBC:
		return sm4.NewCipher(key)
	}
	return nil, fmt.Errorf("unknown algorithm %q", string(a))
}
