package control

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// checkJSON makes the checks encoding/json does not: a name given twice in
// one object (json keeps the last silently: which "output" was meant?) and
// text that is not UTF-8 (json replaces it with U+FFFD silently, so an
// object name would not be the one written). Syntax errors are left to the
// decoder that follows.
func checkJSON(data []byte) *APIError {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var stack []*jsonFrame
	var prev int64
	for {
		tok, err := dec.Token()
		if err != nil {
			return nil // io.EOF, or a syntax error the decoder reports
		}
		raw := data[prev:dec.InputOffset()]
		prev = dec.InputOffset()
		var top *jsonFrame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if name, isKey := tok.(string); isKey && top != nil && top.object && top.wantKey {
			if !utf8.Valid(raw) {
				return badRequest("a field name in %s is not valid UTF-8", top.where())
			}
			folded := strings.ToLower(name) // json matches names case-insensitively
			if top.keys[folded] {
				return badRequest("field %q is given twice", top.child(name))
			}
			top.keys[folded] = true
			top.key, top.wantKey = name, false
			continue
		}
		if !utf8.Valid(raw) {
			return badRequest("field %q is not valid UTF-8 text", top.member())
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			f := &jsonFrame{object: tok == json.Delim('{'), wantKey: true, keys: map[string]bool{}}
			if top != nil {
				f.path = top.member()
			}
			stack = append(stack, f)
			continue
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
			if len(stack) == 0 {
				return nil
			}
			top = stack[len(stack)-1]
		}
		if top != nil {
			top.valueDone()
		}
	}
}

// jsonFrame is one open object or array of checkJSON's walk.
type jsonFrame struct {
	object  bool
	path    string // dotted path of this object or array, "" at the top
	keys    map[string]bool
	key     string // object: the name whose value is being read
	wantKey bool   // object: the next string is a name
	index   int    // array: index of the next element
}

func (f *jsonFrame) valueDone() {
	if f.object {
		f.wantKey = true
	} else {
		f.index++
	}
}

// member is the path of the value being read.
func (f *jsonFrame) member() string {
	if f == nil {
		return "(request)"
	}
	return f.child(f.key)
}

// child is the path of the current member: "input.object", "drm_list[1]".
func (f *jsonFrame) child(name string) string {
	if f == nil {
		return "(request)"
	}
	if !f.object {
		return fmt.Sprintf("%s[%d]", f.path, f.index)
	}
	n := shownName(name)
	if f.path == "" {
		return n
	}
	return f.path + "." + n
}

func (f *jsonFrame) where() string {
	if f.path == "" {
		return "the request"
	}
	return strconv.Quote(f.path)
}

// requestFields are the names of the request schema: shown in messages
// whatever their length.
var requestFields = map[string]bool{
	"input": true, "output": true, "encryption": true, "user_data": true,
	"bucket": true, "location": true, "object": true, "file_name": true,
	"hls_encrypt": true, "key": true, "url": true, "iv": true, "algorithm": true,
	"preview_duration": true, "multidrm": true, "emi": true, "content_id": true,
	"streaming_mode": true, "drm_list": true, "encrypt_audio": true,
}

// maxShownName is the longest unknown field name an error message repeats:
// shorter than any key (16 characters raw, 22 or more in base64), so a key
// pasted as a field name never reaches a reply, a stored response or a log.
const maxShownName = 12

// shownName is how an error message names a field: schema names and short
// plain names as they are, anything else only by its length.
func shownName(name string) string {
	if requestFields[name] {
		return name
	}
	if len(name) <= maxShownName && name != "" && strings.Trim(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") == "" {
		return name
	}
	return fmt.Sprintf("<%d-byte name, not shown>", len(name))
}
