// Package cenc makes Common Encryption (ISO/IEC 23001-7) of fragmented MP4
// on the fly: protected init segments (encv/enca, sinf, PSSH per DRM) made
// once, and media segments whose size is fixed at planning and whose bytes
// are encrypted sample by sample as they are read, at any offset.
//
// Planning reads each media segment once (Scan) and keeps a compact Layout:
// where each box lies, the new moof's size, and each video sample's
// clear/protected subsample split. Serving (Parts) re-reads the source moof
// and the sample bytes asked for and encrypts just those: cenc (AES-CTR) is
// seekable by design; cbcs (AES-CBC, 1:9 pattern, constant IV) restarts its
// chain at every subsample, so a read inside one re-encrypts at most that
// subsample's earlier pattern blocks.
package cenc

import (
	"bytes"
	"crypto/aes"
	stdcipher "crypto/cipher"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"strings"
	"unicode/utf16"

	"github.com/Eyevinn/mp4ff/mp4"
	"github.com/emmansun/gmsm/sm4"
)

// Scheme is a Common Encryption protection scheme (the schm box's type).
type Scheme string

// The schemes mpcfs makes, by the request's emi.
const (
	CENC Scheme = "cenc" // emi 16420: AES-128-CTR, 8-byte per-sample IVs
	CBCS Scheme = "cbcs" // emi 16418: AES-128-CBC, 1:9 pattern, constant IV
	// SM4S (emi 16422) is ChinaDRM's SM4 sample encryption: the cbcs
	// rules (video 1:9 pattern from each subsample's protected start,
	// audio whole samples, constant IV) with the SM4 block cipher.
	// ChinaDRM names it "SM4-SAMPLE"/"SM4S" (OpenHarmony's
	// CodecDrmDecrypt::SetDrmAlgoAndBlocks: SM4-CBC, 1 block encrypted,
	// 9 skipped); its schm fourcc "sm4s" follows that name, as the
	// ChinaDRM specification itself could not be consulted.
	SM4S Scheme = "sm4s"
)

// CBCLike reports whether the scheme is CBC with a constant IV, pattern
// for video and whole samples for audio (cbcs, sm4s).
func (s Scheme) CBCLike() bool { return s == CBCS || s == SM4S }

// rangeScheme is how mp4ff splits video samples into subsamples for the
// scheme: cenc (protected bytes a multiple of 16, headers clear) or cbcs
// (protected from the end of the slice header).
func (s Scheme) rangeScheme() string {
	if s.CBCLike() {
		return string(CBCS)
	}
	return string(CENC)
}

// Block is the scheme's block cipher under key.
func (s Scheme) Block(key []byte) (stdcipher.Block, error) {
	if len(key) != 16 {
		return nil, fmt.Errorf("content key must be 16 bytes, got %d", len(key))
	}
	if s == SM4S {
		return sm4.NewCipher(key)
	}
	return aes.NewCipher(key)
}

// SchemeOfEMI maps the MPC request's emi to a scheme; 0 is the default.
func SchemeOfEMI(emi int) (Scheme, error) {
	switch emi {
	case 0, 16420:
		return CENC, nil
	case 16418:
		return CBCS, nil
	case 16422:
		return SM4S, nil
	}
	return "", fmt.Errorf("unknown emi %d (want 16418, 16420 or 16422)", emi)
}

// DRM system names of the request's drm_list, plus the mpcfs extension
// CLEARKEY, and their SystemIDs.
const (
	Widevine  = "WIDEVINE"
	PlayReady = "PLAYREADY"
	ChinaDRM  = "CHINA_DRM"
	ClearKey  = "CLEARKEY"

	WidevineSystemID  = "edef8ba9-79d6-4ace-a3c8-27dcd51d21ed"
	PlayReadySystemID = "9a04f079-9840-4286-ab92-e65be0885f95"
	// ChinaDRMSystemID is ChinaDRM's entry in the DASH-IF registry of
	// content protection identifiers (dashif.org/identifiers/
	// content_protection); Huawei's WisePlay, a ChinaDRM implementation,
	// uses the same SystemID (Shaka Player's HLS parser, key format
	// urn:uuid:3d5e6d35-...).
	ChinaDRMSystemID = "3d5e6d35-9b9a-41e8-b843-dd3c6e72c42c"
	// CommonSystemID is the W3C common PSSH ("cenc" init data) that
	// ClearKey in browsers reads KIDs from.
	CommonSystemID = "1077efec-c0b2-4d02-ace3-3c1e52e2fb4b"
	// ClearKeyDASHSystemID names ClearKey in a DASH ContentProtection.
	ClearKeyDASHSystemID = "e2719d58-a985-b3c9-781a-b030af78d30e"
)

// catch turns a panic while parsing hostile MP4 (mp4ff checks some
// things with panics) into an error, so bad media fails one task and
// never the mount.
func catch(err *error) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("malformed MP4: %v", r)
	}
}

// KnownDRM reports whether name is a drm_list entry mpcfs can signal.
func KnownDRM(name string) bool {
	switch name {
	case Widevine, PlayReady, ChinaDRM, ClearKey:
		return true
	}
	return false
}

// kidNamespace is the UUID namespace of KIDs derived from content_id.
var kidNamespace = [16]byte{0x6d, 0x70, 0x63, 0x66, 0x73, 0x2d, 0x4b, 0x49, 0x44, 0x2d, 0x6e, 0x73, 0x2d, 0x76, 0x31, 0x00}

// KIDFromContentID derives the KID of a content_id: a name-based UUID
// (RFC 9562 version 5) in an mpcfs namespace, so the same content_id always
// gives the same KID. Without a content_id the KID is random.
func KIDFromContentID(contentID string) ([16]byte, error) {
	var kid [16]byte
	if contentID == "" {
		if _, err := rand.Read(kid[:]); err != nil {
			return kid, err
		}
		kid[6] = kid[6]&0x0f | 0x40
	} else {
		h := sha1.New()
		h.Write(kidNamespace[:])
		h.Write([]byte(contentID))
		copy(kid[:], h.Sum(nil))
		kid[6] = kid[6]&0x0f | 0x50
	}
	kid[8] = kid[8]&0x3f | 0x80
	return kid, nil
}

// UUIDString formats 16 bytes as a UUID, 8-4-4-4-12 lower-case hex.
func UUIDString(b [16]byte) string {
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// ParseUUID reads a UUID string (with or without dashes).
func ParseUUID(s string) ([16]byte, error) {
	var u [16]byte
	b, err := hex.DecodeString(strings.ReplaceAll(s, "-", ""))
	if err != nil || len(b) != 16 {
		return u, fmt.Errorf("not a UUID: %q", s)
	}
	copy(u[:], b)
	return u, nil
}

// Config is what a task's Common Encryption needs besides the media.
type Config struct {
	Scheme     Scheme
	KID        [16]byte
	Key        []byte   // 16 bytes; never logged
	ConstantIV []byte   // cbcs: 16 bytes
	DRMs       []string // drm_list order, CLEARKEY allowed
	ContentID  string
	LicenseURL string // hls_encrypt.url: PlayReady LA_URL, ClearKey license URL
	// EncryptAudio: audio tracks are encrypted too (else they stay clear).
	EncryptAudio bool
	// ClearLead (preview_duration, seconds): fragments of protected
	// tracks starting before it stay clear. As Shaka Packager's
	// --clear_lead does it: the init's stsd gets the clear sample entry
	// after the protected one, and clear fragments name it in their tfhd
	// (sample_description_index 2), so players set up decryption from
	// the init and play the lead without a key.
	ClearLead float64
}

// Pssh is one DRM system's signalling: its SystemID and whole PSSH box.
type Pssh struct {
	DRM      string
	SystemID string
	Box      []byte // the encoded pssh box
	// PRO is PlayReady's PlayReady Object (the pssh payload), for
	// mspr:pro in DASH and the HLS data URI.
	PRO []byte
}

// PsshBoxes makes the PSSH of every DRM of cfg.DRMs, in that order.
func (cfg *Config) PsshBoxes() ([]Pssh, error) {
	var out []Pssh
	for _, drm := range cfg.DRMs {
		var box *mp4.PsshBox
		var err error
		p := Pssh{DRM: drm}
		kid := UUIDString(cfg.KID)
		switch drm {
		case Widevine:
			p.SystemID = WidevineSystemID
			box, err = mp4.NewPsshBox(WidevineSystemID, nil, nil)
			if err == nil {
				box.Data = widevineData(cfg.KID, cfg.ContentID, cfg.Scheme)
			}
		case PlayReady:
			p.SystemID = PlayReadySystemID
			p.PRO = PlayReadyObject(cfg.KID, cfg.LicenseURL, cfg.Scheme)
			box, err = mp4.NewPsshBox(PlayReadySystemID, nil, nil)
			if err == nil {
				box.Data = p.PRO
			}
		case ChinaDRM:
			// ChinaDRM's PSSH payload is not public: a version 1 box
			// naming the KID, which a ChinaDRM client can look up.
			p.SystemID = ChinaDRMSystemID
			box, err = mp4.NewPsshBox(ChinaDRMSystemID, []string{kid}, nil)
		case ClearKey:
			p.SystemID = CommonSystemID
			box, err = mp4.NewPsshBox(CommonSystemID, []string{kid}, nil)
		default:
			return nil, fmt.Errorf("unknown DRM %q in drm_list", drm)
		}
		if err != nil {
			return nil, err
		}
		var buf bytes.Buffer
		if err := box.Encode(&buf); err != nil {
			return nil, err
		}
		p.Box = buf.Bytes()
		out = append(out, p)
	}
	return out, nil
}

// widevineData is the WidevineCencHeader protobuf: key_id (2),
// content_id (4), protection_scheme (9, the scheme's fourcc).
func widevineData(kid [16]byte, contentID string, scheme Scheme) []byte {
	var b []byte
	b = append(b, 0x12, 16)
	b = append(b, kid[:]...)
	if contentID != "" {
		b = append(b, 0x22)
		b = binary.AppendUvarint(b, uint64(len(contentID)))
		b = append(b, contentID...)
	}
	b = append(b, 0x48)
	b = binary.AppendUvarint(b, uint64(binary.BigEndian.Uint32([]byte(scheme))))
	return b
}

// PlayReadyObject is a PlayReady Object holding one WRMHEADER record:
// version 4.0.0.0 (AESCTR, for cenc) or 4.3.0.0 (AESCBC, for cbcs), naming
// the KID and the license URL. The KID is written in PlayReady's GUID byte
// order (the first three fields little-endian).
func PlayReadyObject(kid [16]byte, laURL string, scheme Scheme) []byte {
	g := kid
	g[0], g[1], g[2], g[3] = kid[3], kid[2], kid[1], kid[0]
	g[4], g[5] = kid[5], kid[4]
	g[6], g[7] = kid[7], kid[6]
	kidB64 := base64.StdEncoding.EncodeToString(g[:])
	var la strings.Builder
	if laURL != "" {
		la.WriteString("<LA_URL>")
		xml.EscapeText(&la, []byte(laURL))
		la.WriteString("</LA_URL>")
	}
	var hdr string
	if scheme.CBCLike() {
		hdr = `<WRMHEADER xmlns="http://schemas.microsoft.com/DRM/2007/03/PlayReadyHeader" version="4.3.0.0"><DATA><PROTECTINFO><KIDS><KID ALGID="AESCBC" VALUE="` +
			kidB64 + `"></KID></KIDS></PROTECTINFO>` + la.String() + `</DATA></WRMHEADER>`
	} else {
		hdr = `<WRMHEADER xmlns="http://schemas.microsoft.com/DRM/2007/03/PlayReadyHeader" version="4.0.0.0"><DATA><PROTECTINFO><KEYLEN>16</KEYLEN><ALGID>AESCTR</ALGID></PROTECTINFO><KID>` +
			kidB64 + `</KID>` + la.String() + `</DATA></WRMHEADER>`
	}
	u := utf16.Encode([]rune(hdr))
	rec := make([]byte, 2*len(u))
	for i, c := range u {
		binary.LittleEndian.PutUint16(rec[2*i:], c)
	}
	out := make([]byte, 10, 10+len(rec))
	binary.LittleEndian.PutUint32(out[0:], uint32(10+len(rec)))
	binary.LittleEndian.PutUint16(out[4:], 1) // one record
	binary.LittleEndian.PutUint16(out[6:], 1) // type 1: rights management header
	binary.LittleEndian.PutUint16(out[8:], uint16(len(rec)))
	return append(out, rec...)
}
