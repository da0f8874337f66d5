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

// func cbcEnc4Asm(l *cbcLanes, n int)
//
// Four independent CBC chains, each encrypting n bytes (a multiple of 16,
// > 0) in place at l.buf[i] with round keys l.rk[i], its chain in and out
// at l.chain[i]. CBC is serial within a chain: one lane waits on AESENC's
// latency, so four interleaved lanes cost about what one does.
// cbcLanes layout: buf [4]*byte at 0, rk [4]*[176]byte at 32, chain
// [4][16]byte at 64.
TEXT ·cbcEnc4Asm(SB), NOSPLIT, $0-16
	MOVQ l+0(FP), R12
	MOVQ n+8(FP), R13
	MOVQ 0(R12), R8
	MOVQ 8(R12), R9
	MOVQ 16(R12), R10
	MOVQ 24(R12), R11
	MOVQ 32(R12), AX
	MOVQ 40(R12), BX
	MOVQ 48(R12), CX
	MOVQ 56(R12), DX
	MOVOU 64(R12), X0
	MOVOU 80(R12), X1
	MOVOU 96(R12), X2
	MOVOU 112(R12), X3

loop4:
	MOVOU (R8), X4
	MOVOU (R9), X5
	MOVOU (R10), X6
	MOVOU (R11), X7
	MOVOU (AX), X8
	MOVOU (BX), X9
	MOVOU (CX), X10
	MOVOU (DX), X11
	PXOR  X8, X4
	PXOR  X9, X5
	PXOR  X10, X6
	PXOR  X11, X7
	PXOR  X4, X0
	PXOR  X5, X1
	PXOR  X6, X2
	PXOR  X7, X3

#define ROUND4(off) \
	MOVOU  off(AX), X8 \
	MOVOU  off(BX), X9 \
	MOVOU  off(CX), X10 \
	MOVOU  off(DX), X11 \
	AESENC X8, X0 \
	AESENC X9, X1 \
	AESENC X10, X2 \
	AESENC X11, X3

	ROUND4(16)
	ROUND4(32)
	ROUND4(48)
	ROUND4(64)
	ROUND4(80)
	ROUND4(96)
	ROUND4(112)
	ROUND4(128)
	ROUND4(144)
	MOVOU      160(AX), X8
	MOVOU      160(BX), X9
	MOVOU      160(CX), X10
	MOVOU      160(DX), X11
	AESENCLAST X8, X0
	AESENCLAST X9, X1
	AESENCLAST X10, X2
	AESENCLAST X11, X3
	MOVOU      X0, (R8)
	MOVOU      X1, (R9)
	MOVOU      X2, (R10)
	MOVOU      X3, (R11)
	ADDQ       $16, R8
	ADDQ       $16, R9
	ADDQ       $16, R10
	ADDQ       $16, R11
	SUBQ       $16, R13
	JNZ        loop4

	MOVOU X0, 64(R12)
	MOVOU X1, 80(R12)
	MOVOU X2, 96(R12)
	MOVOU X3, 112(R12)
	RET
