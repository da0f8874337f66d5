package control

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/mpcfs/mpcfs/cenc"
	"github.com/mpcfs/mpcfs/control/hls"
	"github.com/mpcfs/mpcfs/crypto"
	"github.com/mpcfs/mpcfs/internal/metrics"
	"github.com/mpcfs/mpcfs/store"
)

// Plan lists every output file of a SUCCEEDED task. It is computed once,
// when the task is processed, and stored with the task: outputs are then
// served from it without re-reading any playlist.
type Plan struct {
	Files []OutFile `json:"files"`
	// CENC is set when multidrm was applied: what serving the samples
	// needs besides the key and each segment's layout.
	CENC *CENCInfo `json:"cenc,omitempty"`
	// Note is added to the task's description (e.g. why multidrm was
	// not applied).
	Note string `json:"note,omitempty"`
}

// OutFile is one output file: a rewritten playlist (Playlist set) or a
// segment file made of parts of one source object (Parts set).
type OutFile struct {
	Name string `json:"name"` // relative to the output folder
	// Playlist is a file served from memory: a playlist or MPD, or a
	// protected init segment.
	Playlist []byte    `json:"playlist,omitempty"`
	Parts    []OutPart `json:"parts,omitempty"`
	Size     int64     `json:"size"` // exact, before any byte is encrypted
	// CENC is the layout of a Common Encryption media segment: Parts
	// then holds the whole source segment, clear.
	CENC *cenc.Layout `json:"cenc,omitempty"`
}

// OutPart is a byte range of a source object, encrypted or clear.
type OutPart struct {
	Key     string `json:"key"` // source object in the input bucket
	ETag    string `json:"etag"`
	Off     int64  `json:"off"`
	Len     int64  `json:"len"`
	Encrypt bool   `json:"encrypt"`
	IV      []byte `json:"iv,omitempty"` // CBC IV or CTR initial counter block
}

// Limits against hostile or runaway inputs.
const (
	maxPlaylistSize = 64 << 20
	maxVariants     = 1000
	maxOutputFiles  = 500000
)

// taskError is a FAILED task's reason: an MPC code and a description.
type taskError struct{ code, msg string }

func (e *taskError) Error() string { return e.code + ": " + e.msg }

func failf(code, format string, args ...any) *taskError {
	return &taskError{code: code, msg: fmt.Sprintf(format, args...)}
}

// planner builds a Plan for one task. It reads only playlists; segments are
// only listed or stat'ed for their exact sizes and ETags.
type planner struct {
	ctx     context.Context
	st      store.Store
	rec     *record
	bucket  string
	baseDir string // folder of the input playlist, "" or ending in "/"

	infos     map[string]store.ObjectInfo
	listed    map[string]bool
	files     map[string]*srcFile
	fileOrder []string
	media     []*mediaOut
	ctrIndex  uint64
	out       []OutFile
	extra     []*srcFile // I-frame copies of segments (see placeIFrames)

	// Reads started ahead of the serial planning (plan_fetch.go).
	readsAtOnce int
	sem         chan struct{}
	gets        map[string]*pending[[]byte]
	lists       map[string]*pending[store.Listing]
	wg          sync.WaitGroup

	playlists map[string]bool   // every playlist read, by key
	read      map[string][]byte // what readObject read, by key (the multidrm probe and the HLS planning read the same playlists)
	planned   map[string]bool   // media playlists planned, by key
	outSrc    map[string]string // output name -> what it is made from
	note      string            // for the task's description
}

// srcFile collects how each referenced source object is used.
type srcFile struct {
	key    string
	name   string // output name
	info   store.ObjectInfo
	alg    crypto.Algorithm
	usedBy string   // the first playlist referencing it
	whole  *OutPart // referenced as a whole segment
	ranges []*OutPart
	newOff map[[2]int64]int64 // source range -> offset in the output file
	// I-frame playlists' byte ranges of this object, placed by
	// placeIFrames: in this output, or in a copy of their own.
	iframes []*segRef
}

// mediaOut is a media playlist waiting to be rewritten once every file's
// layout (and so every new byte range) is known.
type mediaOut struct {
	key  string // source playlist
	name string
	data []byte
	pl   *hls.Playlist
	segs []*segRef
	maps []*segRef
}

type segRef struct {
	file *srcFile // nil: an EXT-X-GAP segment whose object is missing
	part *OutPart
	tag  *hls.KeyTag
	// An I-frame range moved to a copy: the playlist and URI it came
	// from, and the URI that names the copy (empty: not moved).
	plKey, srcURI, uri string
}

// buildPlan plans rec's task, reading at most readsAtOnce playlists and
// listings at once (Tuning.PlanReadsAtOnce; 0: one at a time).
func buildPlan(ctx context.Context, st store.Store, rec *record, readsAtOnce int) (*Plan, *taskError) {
	ctx, cancel := context.WithCancel(ctx)
	p := &planner{ctx: ctx, st: st, rec: rec, bucket: rec.Input.Bucket, readsAtOnce: readsAtOnce,
		infos: map[string]store.ObjectInfo{}, listed: map[string]bool{}, files: map[string]*srcFile{},
		playlists: map[string]bool{}, read: map[string][]byte{}, planned: map[string]bool{}, outSrc: map[string]string{}}
	// Reads started ahead and not taken (a failure ended the planning)
	// are stopped and waited for: none outlives the planning.
	defer p.wg.Wait()
	defer cancel()
	if d := path.Dir(rec.Input.Object); d != "." {
		p.baseDir = d + "/"
	}
	if rec.MultiDRM != nil {
		plan, applied, err := p.planCENC()
		if err != nil {
			return nil, err
		}
		if applied {
			return plan, nil
		}
	}
	if err := p.planInput(); err != nil {
		return nil, err
	}
	if err := p.finish(); err != nil {
		return nil, err
	}
	return &Plan{Files: p.out, Note: p.note}, nil
}

func (p *planner) planInput() *taskError {
	in := p.rec.Input.Object
	if strings.EqualFold(path.Ext(in), ".mpd") {
		return failf(CodeInputFormat, "input %q: DASH (.mpd) input needs encryption.multidrm (Common Encryption); hls_encrypt alone encrypts HLS", in)
	}
	p.prefetch(in) // its folder's listing and the playlist at once
	data, pl, err := p.readPlaylist(in)
	if err != nil {
		return err
	}
	top := p.rec.Output.FileName
	if top == "" {
		top = path.Base(in)
	}
	if !pl.Master {
		return p.planMedia(in, top, data, pl)
	}
	if err := p.emit(OutFile{Name: top, Playlist: data, Size: int64(len(data))}, "playlist "+strconv.Quote(in)); err != nil {
		return err
	}
	if err := p.planSideRefs(in, pl); err != nil {
		return err
	}
	if len(pl.Refs) > maxVariants {
		return failf(CodeInputFormat, "master playlist %q references %d playlists (limit %d)", in, len(pl.Refs), maxVariants)
	}
	var refs []string
	for _, ref := range pl.Refs {
		if key, _, err := p.resolve(in, ref); err == nil {
			refs = append(refs, key)
		}
	}
	p.prefetch(refs...) // every variant and its folder at once
	for _, ref := range pl.Refs {
		if err := p.planRef(in, ref); err != nil {
			return err
		}
	}
	return nil
}

// planRef plans one playlist referenced by the master playlist.
func (p *planner) planRef(master, ref string) *taskError {
	key, name, err := p.resolve(master, ref)
	if err != nil {
		return err
	}
	if p.planned[key] {
		return nil // named twice (by two spellings, or as a variant and a rendition)
	}
	data, pl, err := p.readPlaylist(key)
	if err != nil {
		return err
	}
	if pl.Master {
		return failf(CodeInputFormat, "playlist %q referenced by master %q is itself a master playlist", key, master)
	}
	return p.planMedia(key, name, data, pl)
}

// readPlaylist fetches and parses a playlist object.
func (p *planner) readPlaylist(key string) ([]byte, *hls.Playlist, *taskError) {
	data, err := p.readObject(key)
	if err != nil {
		return nil, nil, err
	}
	p.playlists[key] = true
	pl, perr := hls.Parse(data)
	if perr != nil {
		return nil, nil, failf(CodeInputFormat, "playlist %q: %v", key, perr)
	}
	if pl.Encrypted {
		return nil, nil, failf(CodeInputFormat, "playlist %q is already encrypted (it has an EXT-X-KEY)", key)
	}
	return data, pl, nil
}

func (p *planner) readObject(key string) ([]byte, *taskError) {
	if data, ok := p.read[key]; ok {
		return data, nil
	}
	data, terr := p.readObjectOnce(key)
	if terr == nil {
		p.read[key] = data
	}
	return data, terr
}

func (p *planner) readObjectOnce(key string) ([]byte, *taskError) {
	info, terr := p.stat(key)
	if terr != nil {
		return nil, terr
	}
	if info.Size > maxPlaylistSize {
		return nil, failf(CodeInputFormat, "playlist %q is %d bytes (limit %d)", key, info.Size, maxPlaylistSize)
	}
	if data, ok, err := take(p.gets, key); ok {
		if err != nil {
			return nil, storeFailure(key, err)
		}
		return data, nil
	}
	rc, err := p.st.Open(p.ctx, p.bucket, key, 0, -1)
	if err != nil {
		return nil, storeFailure(key, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, maxPlaylistSize+1))
	if err != nil {
		return nil, storeFailure(key, err)
	}
	return data, nil
}

func storeFailure(key string, err error) *taskError {
	if errors.Is(err, store.ErrNotExist) {
		return failf(CodeInputNotExist, "object %q does not exist", key)
	}
	return failf(CodeOperationFailed, "reading %q: %v", key, err)
}

// resolve turns a playlist URI into a source key and an output name
// relative to the output folder; the source must stay in the input folder.
func (p *planner) resolve(playlistKey, uri string) (key, name string, terr *taskError) {
	key, err := hls.ResolveURI(playlistKey, uri)
	if err != nil {
		return "", "", failf(CodeInputFormat, "playlist %q: %v", playlistKey, err)
	}
	if !strings.HasPrefix(key, p.baseDir) {
		return "", "", failf(CodeInputFormat, "playlist %q: URI %q resolves to %q, outside the input folder %q", playlistKey, uri, key, p.baseDir)
	}
	return key, strings.TrimPrefix(key, p.baseDir), nil
}

// stat returns an object's size and ETag. It lists each folder once (one
// request for up to 1000 objects) instead of one HEAD per segment.
func (p *planner) stat(key string) (store.ObjectInfo, *taskError) {
	if info, ok := p.infos[key]; ok {
		return info, nil
	}
	dir := dirOf(key)
	if !p.listed[dir] {
		p.listed[dir] = true
		l, ok, err := take(p.lists, dir)
		if !ok {
			l, err = p.st.List(p.ctx, p.bucket, dir)
		}
		if err == nil {
			for _, o := range l.Objects {
				p.infos[o.Key] = o
			}
		}
	}
	if info, ok := p.infos[key]; ok {
		return info, nil
	}
	info, err := p.st.Stat(p.ctx, p.bucket, key)
	if err != nil {
		return info, storeFailure(key, err)
	}
	p.infos[key] = info
	return info, nil
}

func (p *planner) planMedia(key, name string, data []byte, pl *hls.Playlist) *taskError {
	if !pl.Ended {
		return failf(CodeInputFormat, "playlist %q is live (no EXT-X-ENDLIST): only finished (VOD) playlists can be encrypted", key)
	}
	p.planned[key] = true
	if err := p.planSideRefs(key, pl); err != nil {
		return err
	}
	m := &mediaOut{key: key, name: name, data: data, pl: pl}
	for _, mp := range pl.Maps {
		ref, err := p.use(reference{playlist: key, uri: mp.URI, byteRange: mp.ByteRange}) // init sections stay clear
		if err != nil {
			return err
		}
		m.maps = append(m.maps, ref)
	}
	for i := range pl.Segments {
		ref, err := p.planSegment(key, &pl.Segments[i], pl.IFramesOnly)
		if err != nil {
			return err
		}
		m.segs = append(m.segs, ref)
	}
	p.media = append(p.media, m)
	return nil
}

func (p *planner) planSegment(plKey string, seg *hls.Segment, iframes bool) (*segRef, *taskError) {
	if seg.Gap {
		if ref, missing := p.missingGap(plKey, seg); missing {
			return ref, nil
		}
	}
	if seg.Start < float64(p.rec.PreviewDuration) {
		return p.use(reference{playlist: plKey, uri: seg.URI, byteRange: seg.ByteRange, iframes: iframes}) // the clear lead
	}
	iv := p.segmentIV(seg.SeqNo)
	ref, err := p.use(reference{playlist: plKey, uri: seg.URI, byteRange: seg.ByteRange, encrypt: true, iv: iv, iframes: iframes})
	if err != nil {
		return nil, err
	}
	ref.tag = p.keyTag(ref.part.IV)
	if ref.tag.IV == "" && string(ref.part.IV) != string(iv) {
		// The bytes were encrypted for an earlier listing of the same
		// range: name that IV, not this segment's sequence number.
		ref.tag.IV = "0x" + hex.EncodeToString(ref.part.IV)
	}
	return ref, nil
}

// missingGap handles an EXT-X-GAP segment whose object does not exist:
// players must not load a gap segment (RFC 8216bis 4.4.4.7), so its line
// is kept, with the EXT-X-KEY it would have had, and nothing is served for
// it. A gap segment whose object exists is planned like any other.
func (p *planner) missingGap(plKey string, seg *hls.Segment) (*segRef, bool) {
	key, _, terr := p.resolve(plKey, seg.URI)
	if terr != nil {
		return nil, false // planned normally, which reports the URI
	}
	if _, terr := p.stat(key); terr == nil || terr.code != CodeInputNotExist {
		return nil, false
	}
	ref := &segRef{}
	if seg.Start >= float64(p.rec.PreviewDuration) {
		ref.tag = p.keyTag(p.segmentIV(seg.SeqNo))
	}
	return ref, true
}

// planSideRefs serves the objects of URIs in tags mpcfs does not follow
// (EXT-X-SESSION-DATA, EXT-X-CONTENT-STEERING, EXT-X-DATERANGE), so the
// output never names a file it does not have. An absolute URL (a scheme
// or "//host") names no object of the input and is kept as it is. A
// relative URI must resolve inside the input folder; a data file is then
// copied clear (it is not media); another presentation (an interstitial's
// X-ASSET-URI or X-ASSET-LIST) FAILS the task: it would need a task of its
// own.
func (p *planner) planSideRefs(plKey string, pl *hls.Playlist) *taskError {
	for _, r := range pl.SideRefs {
		if isAbsoluteURL(r.URI) {
			continue
		}
		if r.Presentation {
			return failf(CodeInputFormat, "playlist %q line %d: %s %s=%q names another presentation by a relative URI: encrypt it with a task of its own and name it by an absolute URL",
				plKey, r.Line, r.Tag, r.Attr, r.URI)
		}
		key, name, terr := p.resolve(plKey, r.URI)
		if terr != nil {
			return failf(terr.code, "%s (in %s %s)", terr.msg, r.Tag, r.Attr)
		}
		f, terr := p.file(key, name, plKey)
		if terr != nil {
			return failf(terr.code, "%s (named by %s %s in playlist %q)", terr.msg, r.Tag, r.Attr, plKey)
		}
		if _, terr := f.useWhole(&OutPart{Key: key, ETag: f.info.ETag}, p.rec.Algorithm == crypto.AES128CTR); terr != nil {
			return failf(terr.code, "%s (named by %s in playlist %q, which is served clear)", terr.msg, r.Tag, plKey)
		}
	}
	return nil
}

// isAbsoluteURL reports a URI with a scheme ("https:", "data:") or a
// network path ("//host/..."): it names nothing in the input bucket.
func isAbsoluteURL(uri string) bool {
	first, _, _ := strings.Cut(uri, "/")
	return strings.HasPrefix(uri, "//") || strings.Contains(first, ":")
}

// segmentIV is the IV of a segment: for CBC the request's iv or else the
// media sequence number (RFC 8216 5.2); for CTR a counter block no other
// segment of the task shares: the task nonce (or the request iv) plus the
// segment's index in the high 64 bits, so keystreams never overlap.
func (p *planner) segmentIV(seq int64) []byte {
	iv := make([]byte, 16)
	if p.rec.Algorithm != crypto.AES128CTR {
		if p.rec.IV != nil {
			return append(iv[:0], p.rec.IV...)
		}
		binary.BigEndian.PutUint64(iv[8:], uint64(seq))
		return iv
	}
	base := p.rec.Nonce
	if p.rec.IV != nil {
		base = p.rec.IV
	}
	copy(iv, base)
	hi := binary.BigEndian.Uint64(iv[:8]) + p.ctrIndex
	binary.BigEndian.PutUint64(iv[:8], hi)
	p.ctrIndex++
	return iv
}

// keyTag is the EXT-X-KEY for an encrypted segment. CBC without a request
// iv writes no IV attribute: players then use the media sequence number.
func (p *planner) keyTag(iv []byte) *hls.KeyTag {
	tag := &hls.KeyTag{Method: p.rec.Algorithm.HLSMethod(), URI: p.rec.KeyURL}
	if p.rec.Algorithm == crypto.AES128CTR || p.rec.IV != nil {
		tag.IV = "0x" + hex.EncodeToString(iv)
	}
	return tag
}

// reference is one line of a playlist naming (a range of) a source object.
type reference struct {
	playlist  string         // the playlist's key
	uri       string         // as the line writes it
	byteRange *hls.ByteRange // nil: the whole object
	encrypt   bool           // the bytes are encrypted, from iv
	iv        []byte
	iframes   bool // the playlist is an I-frame playlist (EXT-X-I-FRAMES-ONLY)
}

// use records that a playlist references (a range of) a source object.
func (p *planner) use(r reference) (*segRef, *taskError) {
	plKey, uri, br, encrypt, iv, iframes := r.playlist, r.uri, r.byteRange, r.encrypt, r.iv, r.iframes
	key, name, err := p.resolve(plKey, uri)
	if err != nil {
		return nil, err
	}
	f, err := p.file(key, name, plKey)
	if err != nil {
		return nil, err
	}
	part := &OutPart{Key: key, ETag: f.info.ETag, Encrypt: encrypt, IV: iv}
	if br == nil {
		return f.useWhole(part, p.rec.Algorithm == crypto.AES128CTR)
	}
	part.Off, part.Len = br.Off, br.Len
	if br.Off < 0 || br.Len < 0 || br.Off+br.Len > f.info.Size {
		return nil, failf(CodeInputFormat, "playlist %q: byte range %d@%d is outside %q (%d bytes)", plKey, br.Len, br.Off, key, f.info.Size)
	}
	if !iframes {
		for _, r := range f.ranges {
			if r.Off == part.Off && r.Len == part.Len {
				// The same range listed again is the same bytes: encrypted
				// once, with the first listing's IV or counter block.
				if r.Encrypt != part.Encrypt {
					return nil, failf(CodeInputFormat, "playlist %q: byte range %d@%d of %q is listed both clear and encrypted", plKey, br.Len, br.Off, key)
				}
				return &segRef{file: f, part: r}, nil
			}
		}
	}
	ref := &segRef{file: f, part: part}
	if iframes {
		ref.plKey, ref.srcURI = plKey, uri
		f.iframes = append(f.iframes, ref)
		return ref, nil
	}
	f.ranges = append(f.ranges, part)
	return ref, nil
}

func (p *planner) file(key, name, usedBy string) (*srcFile, *taskError) {
	if f, ok := p.files[key]; ok {
		return f, nil
	}
	info, err := p.stat(key)
	if err != nil {
		return nil, err
	}
	if len(p.files) >= maxOutputFiles {
		return nil, failf(CodeInputFormat, "input references more than %d files", maxOutputFiles)
	}
	f := &srcFile{key: key, name: name, info: info, alg: p.rec.Algorithm, usedBy: usedBy, newOff: map[[2]int64]int64{}}
	p.files[key] = f
	p.fileOrder = append(p.fileOrder, name)
	metrics.PlannedObjects.Inc()
	return f, nil
}

// useWhole records a whole-object reference. The same segment listed by two
// playlists is encrypted once, so its references must agree on clear or
// encrypted and, for CBC, on the IV; under CTR the later reference simply
// reuses the first counter block.
func (f *srcFile) useWhole(part *OutPart, ctr bool) (*segRef, *taskError) {
	part.Len = f.info.Size
	if f.whole == nil {
		f.whole = part
		return &segRef{file: f, part: part}, nil
	}
	if f.whole.Encrypt != part.Encrypt || (!ctr && string(f.whole.IV) != string(part.IV)) {
		return nil, failf(CodeInputFormat, "segment %q is used twice with different encryption (clear and encrypted, or two IVs)", f.key)
	}
	return &segRef{file: f, part: f.whole}, nil
}

// finish lays out every source file's output, then rewrites the media
// playlists with the new byte ranges.
func (p *planner) finish() *taskError {
	files := make([]*srcFile, 0, len(p.fileOrder)+len(p.extra))
	for _, name := range p.fileOrder {
		files = append(files, p.files[p.baseDir+name])
	}
	for _, f := range files {
		if p.playlists[f.key] {
			// Served as a segment, the playlist's output would be
			// ciphertext (or, for the input itself, one name twice).
			return failf(CodeInputFormat, "playlist %q is used as a segment by playlist %q", f.key, f.usedBy)
		}
	}
	if err := p.placeIFrames(); err != nil {
		return err
	}
	for _, f := range append(files, p.extra...) {
		out, err := f.layout(f.name)
		if err != nil {
			return err
		}
		src := "object " + strconv.Quote(f.key)
		if f.name != strings.TrimPrefix(f.key, p.baseDir) {
			src = "the I-frame copy of " + src
		}
		if err := p.emit(out, src); err != nil {
			return err
		}
	}
	for _, m := range p.media {
		out, err := m.rewrite()
		if err != nil {
			return err
		}
		if err := p.emit(out, "playlist "+strconv.Quote(m.key)); err != nil {
			return err
		}
	}
	return nil
}

// emit adds an output file made from src. Two different sources may not
// share an output name (output.file_name naming a file the input also
// uses): one would silently be lost. Every output key must fit in S3 and
// the mount (MaxKeyBytes, MaxNameBytes per folder or file name).
func (p *planner) emit(out OutFile, src string) *taskError {
	if prev, ok := p.outSrc[out.Name]; ok {
		if prev == src {
			return nil
		}
		return failf(CodeInputFormat, "two outputs would be named %q: %s and %s", out.Name, prev, src)
	}
	key := p.rec.Output.Object + "/" + out.Name
	if len(key) > MaxKeyBytes {
		return failf(CodeInputFormat, "the output of %s would be a %d-byte object name (at most %d)", src, len(key), MaxKeyBytes)
	}
	for _, seg := range strings.Split(out.Name, "/") {
		if len(seg) > MaxNameBytes {
			return failf(CodeInputFormat, "the output of %s would have a %d-byte folder or file name (at most %d)", src, len(seg), MaxNameBytes)
		}
	}
	p.outSrc[out.Name] = src
	p.out = append(p.out, out)
	return nil
}

// placeIFrames decides where I-frame playlists' byte ranges are served.
// An object only I-frame playlists use (ffmpeg writes I-frames to a file
// of their own) keeps its name: its ranges are encrypted one by one like
// any single-file playlist's. An object another playlist also uses, whole
// (Apple's layout: I-frame ranges inside the media segments) or by its
// own ranges, cannot serve both: a segment encrypted whole cannot be
// decrypted range by range. Its I-frame ranges then go to a copy of their
// own, "<name>.iframes<ext>" next to it (the source bytes with each
// I-frame range encrypted on its own, the rest clear), and the I-frame
// playlist's URIs are rewritten to name that copy.
func (p *planner) placeIFrames() *taskError {
	for _, name := range p.fileOrder {
		f := p.files[p.baseDir+name]
		if len(f.iframes) == 0 {
			continue
		}
		if f.whole == nil && len(f.ranges) == 0 {
			for _, ref := range f.iframes {
				f.ranges = append(f.ranges, ref.part)
			}
			continue
		}
		if err := p.iframeCopy(f); err != nil {
			return err
		}
	}
	return nil
}

// iframeCopy moves f's I-frame ranges to an output of their own.
func (p *planner) iframeCopy(f *srcFile) *taskError {
	ext := path.Ext(f.name)
	name := strings.TrimSuffix(f.name, ext) + ".iframes" + ext
	if _, taken := p.files[p.baseDir+name]; taken {
		return failf(CodeInputFormat, "I-frame ranges of %q need an output %q, but the input uses an object of that name", f.key, name)
	}
	cp := &srcFile{key: f.key, name: name, info: f.info, alg: f.alg, newOff: map[[2]int64]int64{}}
	for _, ref := range f.iframes {
		uri := ref.srcURI[:strings.LastIndex(ref.srcURI, "/")+1] + url.PathEscape(path.Base(name))
		if key, err := hls.ResolveURI(ref.plKey, uri); err != nil || key != p.baseDir+name {
			return failf(CodeInputFormat, "playlist %q: cannot name the I-frame copy of %q from URI %q", ref.plKey, f.key, ref.srcURI)
		}
		ref.file, ref.uri = cp, uri
		cp.ranges = append(cp.ranges, ref.part)
	}
	p.files[p.baseDir+name] = cp // a later copy must not take the name
	p.extra = append(p.extra, cp)
	return nil
}

// layout turns a source file's references into output parts. A whole
// reference is one part. Byte-range references are sorted and encrypted one
// by one; bytes no range covers are copied clear so every range keeps its
// place, and each range's new offset is recorded for the playlist.
func (f *srcFile) layout(name string) (OutFile, *taskError) {
	alg := f.alg
	out := OutFile{Name: name}
	if f.whole != nil && len(f.ranges) > 0 {
		// Two media playlists disagree (I-frame playlists were given a
		// copy by placeIFrames): a segment encrypted whole cannot be
		// decrypted range by range, so no output could serve both.
		return out, failf(CodeInputFormat, "object %q is used both as a whole segment and by EXT-X-BYTERANGE "+
			"in media playlists: a segment encrypted whole cannot be decrypted range by range", f.key)
	}
	if f.whole != nil {
		out.Parts = []OutPart{*f.whole}
		out.Size = partSize(f.whole, alg)
		return out, nil
	}
	sort.SliceStable(f.ranges, func(i, j int) bool { return f.ranges[i].Off < f.ranges[j].Off })
	var pos int64
	add := func(part OutPart) {
		out.Parts = append(out.Parts, part)
		out.Size += partSize(&part, alg)
	}
	for i, r := range f.ranges {
		if i > 0 && sameRange(f.ranges[i-1], r) {
			continue // e.g. one EXT-X-MAP listed twice
		}
		if r.Off < pos {
			return out, failf(CodeInputFormat, "object %q: byte ranges overlap at offset %d (overlapping ranges, as in I-frame playlists, are not supported)", f.key, r.Off)
		}
		if r.Off > pos {
			add(f.clearPart(pos, r.Off-pos))
		}
		f.newOff[[2]int64{r.Off, r.Len}] = out.Size
		add(*r)
		pos = r.Off + r.Len
	}
	if pos < f.info.Size {
		add(f.clearPart(pos, f.info.Size-pos))
	}
	return out, nil
}

func sameRange(a, b *OutPart) bool {
	return a.Off == b.Off && a.Len == b.Len && a.Encrypt == b.Encrypt && string(a.IV) == string(b.IV)
}

func (f *srcFile) clearPart(off, n int64) OutPart {
	return OutPart{Key: f.key, ETag: f.info.ETag, Off: off, Len: n}
}

func partSize(part *OutPart, alg crypto.Algorithm) int64 {
	if !part.Encrypt {
		return part.Len
	}
	return alg.EncryptedSize(part.Len)
}

// rewrite renders a media playlist with its keys and new byte ranges.
func (m *mediaOut) rewrite() (OutFile, *taskError) {
	outs := make([]hls.SegmentOut, len(m.segs))
	for i, ref := range m.segs {
		outs[i] = hls.SegmentOut{Key: ref.tag, ByteRange: ref.newRange(m.pl.Segments[i].ByteRange), URI: ref.uri}
	}
	maps := make([]hls.MapOut, len(m.maps))
	for i, ref := range m.maps {
		maps[i] = hls.MapOut{ByteRange: ref.newRange(m.pl.Maps[i].ByteRange)}
	}
	data, err := hls.RewriteMedia(m.data, m.pl, outs, maps)
	if err != nil {
		return OutFile{}, failf(CodeInputFormat, "rewriting playlist %q: %v", m.name, err)
	}
	return OutFile{Name: m.name, Playlist: data, Size: int64(len(data))}, nil
}

// newRange is where a source byte range ended up in its output file.
func (r *segRef) newRange(src *hls.ByteRange) *hls.ByteRange {
	if src == nil || r.file == nil {
		return nil
	}
	return &hls.ByteRange{Len: partSize(r.part, r.file.alg), Off: r.file.newOff[[2]int64{src.Off, src.Len}]}
}
