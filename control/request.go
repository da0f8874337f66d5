package control

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/mpcfs/mpcfs/crypto"
)

// Location is an MPC object location (input or output of a task).
type Location struct {
	Bucket   string `json:"bucket"`
	Location string `json:"location"`
	Object   string `json:"object"`
	FileName string `json:"file_name,omitempty"`
}

// HLSEncrypt is the request's hls_encrypt block. Key and IV are secrets in
// transit only: a parsed request keeps them as bytes in Params and the raw
// strings are dropped.
type HLSEncrypt struct {
	Key       string `json:"key"`
	URL       string `json:"url"`
	IV        string `json:"iv,omitempty"`
	Algorithm string `json:"algorithm,omitempty"`
}

// MultiDRM is validated and kept on the task; see README for what it does
// (nothing to the HLS output yet).
type MultiDRM struct {
	EMI           *int     `json:"emi,omitempty"`
	ContentID     string   `json:"content_id,omitempty"`
	StreamingMode string   `json:"streaming_mode"`
	DRMList       []string `json:"drm_list"`
	EncryptAudio  *int     `json:"encrypt_audio,omitempty"`
}

// Encryption is the request's encryption block.
type Encryption struct {
	HLSEncrypt      *HLSEncrypt `json:"hls_encrypt"`
	PreviewDuration *int        `json:"preview_duration,omitempty"`
	MultiDRM        *MultiDRM   `json:"multidrm,omitempty"`
}

// CreateRequest is the body of POST /v1/{project_id}/encryptions.
type CreateRequest struct {
	Input      *Location   `json:"input"`
	Output     *Location   `json:"output"`
	Encryption *Encryption `json:"encryption"`
	UserData   string      `json:"user_data,omitempty"`
}

// Params is a validated request: what a task needs, with the key decoded.
type Params struct {
	Input           Location
	Output          Location
	Algorithm       crypto.Algorithm
	Key             []byte // 16 bytes; secret
	IV              []byte // 16 bytes or nil
	KeyURL          string
	PreviewDuration int
	MultiDRM        *MultiDRM
	UserData        string
}

// maxRequestSize bounds a request file; MPC requests are a few hundred bytes.
const maxRequestSize = 64 << 10

// ParseRequest decodes and validates a create request against the mount's
// region. Store-dependent checks (buckets, input object) are the Manager's.
func ParseRequest(data []byte, region string) (*Params, *APIError) {
	if len(data) > maxRequestSize {
		return nil, badRequest("request is larger than %d bytes", maxRequestSize)
	}
	if err := checkJSON(data); err != nil {
		return nil, err
	}
	var req CreateRequest
	if err := decodeStrict(data, &req); err != nil {
		return nil, err
	}
	return req.validate(region)
}

// decodeStrict rejects syntax errors, wrong types, unknown fields (a typo in
// an optional field must not be silently ignored) and trailing data.
func decodeStrict(data []byte, v any) *APIError {
	if len(bytes.TrimSpace(data)) == 0 {
		return badRequest("request is empty: expected a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return badRequest("request is not valid JSON: unexpected data after the top-level object")
	}
	return nil
}

func jsonError(err error) *APIError {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return badRequest("request is not valid JSON: %v (at byte %d)", syn, syn.Offset)
	case errors.As(err, &typ):
		if typ.Field == "" {
			return badRequest("request must be a JSON object, not %s", typ.Value)
		}
		return badRequest("field %q must be %s, not %s", typ.Field, jsonTypeName(typ.Type.Kind().String()), typ.Value)
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		return badRequest("request is not valid JSON: unexpected end of input")
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name, uerr := strconv.Unquote(strings.TrimPrefix(err.Error(), "json: unknown field "))
		if uerr != nil {
			return badRequest("unknown field (not shown)")
		}
		return badRequest("unknown field %q", shownName(name))
	}
	return badRequest("request is not valid JSON: %v", err)
}

func jsonTypeName(kind string) string {
	switch kind {
	case "int", "int64":
		return "an integer"
	case "string":
		return "a string"
	case "slice":
		return "an array"
	case "ptr", "struct":
		return "an object"
	}
	return kind
}

func (r *CreateRequest) validate(region string) (*Params, *APIError) {
	p := &Params{UserData: r.UserData}
	if err := validateLocation("input", r.Input, region); err != nil {
		return nil, err
	}
	if err := validateLocation("output", r.Output, region); err != nil {
		return nil, err
	}
	if err := validateInputObject(r.Input.Object); err != nil {
		return nil, err
	}
	out, err := validateOutput(*r.Input, *r.Output)
	if err != nil {
		return nil, err
	}
	p.Input, p.Output = *r.Input, out
	if err := r.Encryption.validate(p); err != nil {
		return nil, err
	}
	return p, nil
}

func validateLocation(name string, l *Location, region string) *APIError {
	if l == nil {
		return badRequest("field %q is required", name)
	}
	switch {
	case l.Bucket == "":
		return badRequest("field %q is required", name+".bucket")
	case l.Location == "":
		return badRequest("field %q is required", name+".location")
	case l.Object == "":
		return badRequest("field %q is required", name+".object")
	case l.Location != region:
		return badRequest("field %q is %q but this mount serves region %q", name+".location", l.Location, region)
	case !validBucketName(l.Bucket):
		return badRequest("field %q: %q is not a valid bucket name", name+".bucket", l.Bucket)
	}
	obj := l.Object
	if name == "output" {
		obj = strings.TrimSuffix(obj, "/") // a folder may be written with its "/"
	}
	if err := validateKeyPath(obj); err != nil {
		return badRequest("field %q: %v", name+".object", err)
	}
	return nil
}

// validBucketName accepts S3 bucket names (3-63 of a-z 0-9 . -) and, for
// local stores, any plain folder name; never a path or a hidden folder.
func validBucketName(b string) bool {
	return b != "" && len(b) <= 255 && !strings.ContainsAny(b, "/\\\x00") && !strings.HasPrefix(b, ".")
}

// Limits of object names: S3 keys hold at most MaxKeyBytes bytes and a
// path component of the mount at most MaxNameBytes (NAME_MAX). An output
// folder leaves room for the names below it.
const (
	MaxKeyBytes       = 1024
	MaxNameBytes      = 255
	maxOutFolderBytes = MaxKeyBytes - MaxNameBytes - 1
)

// validateKeyPath is the one rule for input.object and output.object:
// "/"-separated names, none empty (no leading "/", no "//"), "." or "..",
// each at most MaxNameBytes, no NUL, valid UTF-8, at most MaxKeyBytes in all.
// Such a key is the same object in S3, in a local store and in the mount.
func validateKeyPath(key string) error {
	switch {
	case strings.ContainsRune(key, 0):
		return fmt.Errorf("contains a NUL byte")
	case !utf8.ValidString(key):
		return fmt.Errorf("is not valid UTF-8")
	case len(key) > MaxKeyBytes:
		return fmt.Errorf("is %d bytes long (limit %d)", len(key), MaxKeyBytes)
	case strings.HasPrefix(key, "/"):
		return fmt.Errorf("%q must not start with \"/\"", key)
	}
	for _, seg := range strings.Split(key, "/") {
		switch {
		case seg == "":
			return fmt.Errorf("%q has an empty path segment (\"//\" or a trailing \"/\")", key)
		case seg == ".." || seg == ".":
			return fmt.Errorf("%q contains a %q path segment", key, seg)
		case len(seg) > MaxNameBytes:
			return fmt.Errorf("has a path segment of %d bytes (limit %d)", len(seg), MaxNameBytes)
		}
	}
	return nil
}

func validateInputObject(obj string) *APIError {
	ext := strings.ToLower(path.Ext(obj))
	if ext != ".m3u8" && ext != ".mpd" {
		return badRequest("field %q: %q must name a .m3u8 or .mpd object", "input.object", obj)
	}
	return nil
}

// validateOutput normalizes output.object (a folder: one trailing "/" is
// dropped) and checks file_name. The output folder may not be the input
// playlist's folder: its outputs would hide the sources of the same names.
func validateOutput(in, out Location) (Location, *APIError) {
	out.Object = strings.TrimSuffix(out.Object, "/")
	if out.Object == "" {
		return out, badRequest("field %q must name a folder, not the bucket root", "output.object")
	}
	if len(out.Object) > maxOutFolderBytes {
		return out, badRequest("field %q is %d bytes long (limit %d, to leave room for the names below it)", "output.object", len(out.Object), maxOutFolderBytes)
	}
	if out.Bucket == in.Bucket && out.Object == path.Dir(in.Object) {
		return out, badRequest("field %q: %q is the folder of input.object: the encrypted outputs would hide their sources", "output.object", out.Object)
	}
	if out.FileName != "" {
		ext := strings.ToLower(path.Ext(out.FileName))
		switch {
		case !utf8.ValidString(out.FileName) || len(out.FileName) > MaxNameBytes:
			return out, badRequest("field %q must be valid UTF-8 of at most %d bytes", "output.file_name", MaxNameBytes)
		case strings.ContainsAny(out.FileName, "/\\\x00") || strings.HasPrefix(out.FileName, ".") || (ext != ".m3u8" && ext != ".mpd"):
			return out, badRequest("field %q: %q must be a plain file name ending in .m3u8 or .mpd", "output.file_name", out.FileName)
		}
	}
	return out, nil
}

func (e *Encryption) validate(p *Params) *APIError {
	if e == nil {
		return badRequest("field %q is required", "encryption")
	}
	if err := e.HLSEncrypt.validate(p); err != nil {
		return err
	}
	if e.PreviewDuration != nil {
		if *e.PreviewDuration < 0 {
			return badRequest("field %q must be >= 0, not %d", "encryption.preview_duration", *e.PreviewDuration)
		}
		p.PreviewDuration = *e.PreviewDuration
	}
	if e.MultiDRM != nil {
		if err := e.MultiDRM.validate(); err != nil {
			return err
		}
		p.MultiDRM = e.MultiDRM
	}
	return nil
}

func (h *HLSEncrypt) validate(p *Params) *APIError {
	const f = "encryption.hls_encrypt"
	if h == nil {
		return badRequest("field %q is required", f)
	}
	alg, err := crypto.ParseAlgorithm(h.Algorithm)
	if err != nil {
		return badRequest("field %q: %q is not one of AES-128-CTR, AES-128-CBC, SM4CBC", f+".algorithm", h.Algorithm)
	}
	p.Algorithm = alg
	if h.Key == "" {
		return badRequest("field %q is required", f+".key")
	}
	if p.Key = decode16(h.Key); p.Key == nil {
		// Never echo the value: it is (a wrong form of) a secret.
		return badRequest("field %q must be base64 of exactly 16 bytes or a 16-character string", f+".key")
	}
	if h.IV != "" {
		if p.IV = decode16(h.IV); p.IV == nil {
			return badRequest("field %q must be base64 of exactly 16 bytes or a 16-character string", f+".iv")
		}
	}
	return validateKeyURL(h.URL, p)
}

func validateKeyURL(u string, p *Params) *APIError {
	const f = "encryption.hls_encrypt.url"
	switch {
	case strings.TrimSpace(u) == "":
		return badRequest("field %q is required", f)
	case strings.ContainsAny(u, "\"\r\n"):
		return badRequest("field %q must not contain a double quote or a line break (it goes inside EXT-X-KEY URI=\"...\")", f)
	}
	p.KeyURL = u
	return nil
}

// decode16 accepts a 16-character string as raw bytes (as in the vendor's
// FAQ), else base64 (standard or URL alphabet, padded or not) of exactly 16
// bytes. It returns nil for anything else.
func decode16(s string) []byte {
	if len(s) == 16 {
		return []byte(s)
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil && len(b) == 16 {
			return b
		}
	}
	return nil
}

var (
	validEMI   = map[int]bool{16418: true, 16420: true, 16422: true}
	validModes = map[string]bool{"HLS": true, "DASH": true}
	// CLEARKEY is an mpcfs extension (W3C ClearKey signalling, so a
	// browser can play without a commercial DRM).
	validDRMSystem = map[string]bool{"PLAYREADY": true, "WIDEVINE": true, "CHINA_DRM": true, "CLEARKEY": true}
)

func (m *MultiDRM) validate() *APIError {
	const f = "encryption.multidrm"
	if m.StreamingMode == "" {
		return badRequest("field %q is required", f+".streaming_mode")
	}
	if !validModes[m.StreamingMode] {
		return badRequest("field %q: %q is not HLS or DASH", f+".streaming_mode", m.StreamingMode)
	}
	if len(m.DRMList) == 0 {
		return badRequest("field %q is required (one or more of PLAYREADY, WIDEVINE, CHINA_DRM)", f+".drm_list")
	}
	for i, d := range m.DRMList {
		if !validDRMSystem[d] {
			return badRequest("field %q: %q is not PLAYREADY, WIDEVINE, CHINA_DRM or CLEARKEY", fmt.Sprintf("%s.drm_list[%d]", f, i), d)
		}
	}
	if m.EMI != nil && !validEMI[*m.EMI] {
		return badRequest("field %q: %d is not 16418, 16420 or 16422", f+".emi", *m.EMI)
	}
	if m.EncryptAudio != nil && *m.EncryptAudio != 0 && *m.EncryptAudio != 1 {
		return badRequest("field %q must be 0 or 1, not %d", f+".encrypt_audio", *m.EncryptAudio)
	}
	return nil
}
