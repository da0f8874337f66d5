#include "textflag.h"

// func cbcEncAsm(rk *[176]byte, chain *[16]byte, dst, src *byte, n int)
//
// X1..X11 hold the 11 round keys for the whole call, X0 the chain: each
// block is one load, two PXORs, 9 AESENC, one AESENCLAST and one store.
TEXT ·cbcEncAsm(SB), NOSPLIT, $0-40
	MOVQ  rk+0(FP), AX
	MOVQ  chain+8(FP), BX
	MOVQ  dst+16(FP), DI
	MOVQ  src+24(FP), SI
	MOVQ  n+32(FP), CX
	TESTQ CX, CX
	JZ    done
	MOVOU 0(AX), X1
	MOVOU 16(AX), X2
	MOVOU 32(AX), X3
	MOVOU 48(AX), X4
	MOVOU 64(AX), X5
	MOVOU 80(AX), X6
	MOVOU 96(AX), X7
	MOVOU 112(AX), X8
	MOVOU 128(AX), X9
	MOVOU 144(AX), X10
	MOVOU 160(AX), X11
	MOVOU (BX), X0

loop:
	// Plaintext ^ rk0 does not depend on the chain, so it can be computed
	// while the previous block's rounds are still running.
	MOVOU      (SI), X12
	PXOR       X1, X12
	PXOR       X12, X0
	AESENC     X2, X0
	AESENC     X3, X0
	AESENC     X4, X0
	AESENC     X5, X0
	AESENC     X6, X0
	AESENC     X7, X0
	AESENC     X8, X0
	AESENC     X9, X0
	AESENC     X10, X0
	AESENCLAST X11, X0
	MOVOU      X0, (DI)
	ADDQ       $16, SI
	ADDQ       $16, DI
	SUBQ       $16, CX
	JNZ        loop

	// The last ciphertext block is the chain for the next call.
	MOVOU X0, (BX)

done:
	RET
