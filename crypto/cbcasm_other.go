//go:build !amd64

package crypto

import (
	"crypto/aes"
	stdcipher "crypto/cipher"
)

// newCBCBlock is the block cipher of AES-128-CBC parts: off amd64 there
// is no assembly CBC loop, so it is the stdlib block and its CBC mode.
func newCBCBlock(key []byte) (stdcipher.Block, error) { return aes.NewCipher(key) }
