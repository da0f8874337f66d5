package control

import (
	"bufio"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"sync"

	"github.com/mpcfs/mpcfs/cenc"
	"github.com/mpcfs/mpcfs/control/dash"
	"github.com/mpcfs/mpcfs/control/hls"
	"github.com/mpcfs/mpcfs/store"
)

// CENCInfo is what serving a Common Encryption task needs besides the key
// and each segment's layout.
type CENCInfo struct {
	Scheme     cenc.Scheme `json:"scheme"`
	KID        string      `json:"kid"`
	ConstantIV []byte      `json:"constant_iv,omitempty"` // cbcs; written in the init segments, not secret
}

// Limits on what planning reads into memory at once.
const (
	maxInitSize    = 16 << 20
	maxSegmentSize = 512 << 20
)

// cencPlan is the state of planning a Common Encryption task.
type cencPlan struct {
	cfg     *cenc.Config
	psshs   []cenc.Pssh
	nextIV  uint64
	queue   []*segJob             // segments waiting for planSegments
	inits   map[string]*cenc.Init // by source key
	done    map[string]bool       // source keys already planned
	singles map[string]*singleFile
}

// planCENC plans a multidrm task: DASH, or fMP4 HLS. applied is false for
// MPEG-TS HLS, which cannot carry Common Encryption: the caller then plans
// the whole-segment encryption of hls_encrypt, with a note saying so.
func (p *planner) planCENC() (plan *Plan, applied bool, terr *taskError) {
	md := p.rec.MultiDRM
	in := p.rec.Input.Object
	isMPD := strings.EqualFold(path.Ext(in), ".mpd")
	switch {
	case isMPD && md.StreamingMode != "DASH":
		return nil, false, failf(CodeInputFormat, "encryption.multidrm.streaming_mode is %q but input %q is a DASH MPD", md.StreamingMode, in)
	case !isMPD && md.StreamingMode == "DASH":
		return nil, false, failf(CodeInputFormat, "encryption.multidrm.streaming_mode is DASH but input %q is not an MPD", in)
	}
	if !isMPD {
		fmp4, err := p.hlsIsFMP4(in)
		if err != nil {
			return nil, false, err
		}
		if !fmp4 {
			p.note = fmt.Sprintf("multidrm was not applied: the input is MPEG-TS HLS and Common Encryption needs fragmented MP4; "+
				"segments are encrypted whole with hls_encrypt (%s)", p.rec.Algorithm)
			return nil, false, nil
		}
	}
	cp, err := p.newCENCPlan()
	if err != nil {
		return nil, false, err
	}
	if isMPD {
		err = p.planDASH(cp)
	} else {
		err = p.planHLSCENC(cp)
	}
	if err != nil {
		return nil, false, err
	}
	info := &CENCInfo{Scheme: cp.cfg.Scheme, KID: p.rec.KID}
	if cp.cfg.Scheme.CBCLike() {
		info.ConstantIV = cp.cfg.ConstantIV
	}
	note := fmt.Sprintf("multidrm applied: %s, KID %s, %s", cp.cfg.Scheme, p.rec.KID, strings.Join(cp.cfg.DRMs, "+"))
	if p.rec.PreviewDuration > 0 {
		note += fmt.Sprintf("; fragments starting before %ds are a clear lead", p.rec.PreviewDuration)
	}
	return &Plan{Files: p.out, CENC: info, Note: note}, true, nil
}

func (p *planner) newCENCPlan() (*cencPlan, *taskError) {
	md := p.rec.MultiDRM
	emi := 0
	if md.EMI != nil {
		emi = *md.EMI
	}
	scheme, err := cenc.SchemeOfEMI(emi)
	if err != nil {
		return nil, failf(CodeInputFormat, "encryption.multidrm.emi: %v", err)
	}
	kid, err := cenc.ParseUUID(p.rec.KID)
	if err != nil {
		return nil, failf(CodeOperationFailed, "task KID: %v", err)
	}
	cfg := &cenc.Config{Scheme: scheme, KID: kid, DRMs: md.DRMList, ContentID: md.ContentID,
		LicenseURL: p.rec.KeyURL, EncryptAudio: md.EncryptAudio != nil && *md.EncryptAudio == 1,
		ClearLead: float64(p.rec.PreviewDuration)}
	if scheme.CBCLike() {
		cfg.ConstantIV = p.rec.IV
		if cfg.ConstantIV == nil {
			cfg.ConstantIV = make([]byte, 16)
			if _, err := rand.Read(cfg.ConstantIV); err != nil {
				return nil, failf(CodeOperationFailed, "no randomness: %v", err)
			}
		}
	}
	psshs, err := cfg.PsshBoxes()
	if err != nil {
		return nil, failf(CodeInputFormat, "encryption.multidrm.drm_list: %v", err)
	}
	// Sample IVs count up from the task's random nonce: unique within the
	// task, and apart from other tasks' under the same key.
	cp := &cencPlan{cfg: cfg, psshs: psshs, inits: map[string]*cenc.Init{}, done: map[string]bool{}}
	if len(p.rec.Nonce) >= 8 {
		cp.nextIV = binary.BigEndian.Uint64(p.rec.Nonce[:8])
	}
	return cp, nil
}

// hlsIsFMP4 reads the input playlist (and, for a master, its first media
// playlist) and reports whether its segments are fragmented MP4 (an
// EXT-X-MAP is present).
func (p *planner) hlsIsFMP4(in string) (bool, *taskError) {
	p.prefetch(in)
	_, pl, err := p.readPlaylist(in)
	if err != nil {
		return false, err
	}
	if pl.Master {
		if len(pl.Refs) == 0 {
			return false, failf(CodeInputFormat, "master playlist %q references no playlist", in)
		}
		// Whichever way the task goes, it reads every variant.
		var refs []string
		for _, ref := range pl.Refs[:min(len(pl.Refs), maxVariants)] {
			if key, _, err := p.resolve(in, ref); err == nil {
				refs = append(refs, key)
			}
		}
		p.prefetch(refs...)
		key, _, err := p.resolve(in, pl.Refs[0])
		if err != nil {
			return false, err
		}
		if _, pl, err = p.readPlaylist(key); err != nil {
			return false, err
		}
	}
	return len(pl.Maps) > 0, nil
}

// readLimited reads a whole object of at most limit bytes.
func (p *planner) readLimited(key string, limit int64, what string) ([]byte, store.ObjectInfo, *taskError) {
	info, terr := p.stat(key)
	if terr != nil {
		return nil, info, terr
	}
	if info.Size > limit {
		return nil, info, failf(CodeInputFormat, "%s %q is %d bytes (limit %d)", what, key, info.Size, limit)
	}
	rc, err := p.st.Open(p.ctx, p.bucket, key, 0, -1)
	if err != nil {
		return nil, info, storeFailure(key, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, limit+1))
	if err != nil {
		return nil, info, storeFailure(key, err)
	}
	if int64(len(data)) != info.Size {
		return nil, info, failf(CodeOperationFailed, "%s %q: read %d bytes, listed %d (changed while planning?)", what, key, len(data), info.Size)
	}
	return data, info, nil
}

// protectInit plans a protected init segment (once per source object).
func (p *planner) protectInit(cp *cencPlan, key, name string) (*cenc.Init, *taskError) {
	if in := cp.inits[key]; in != nil {
		return in, nil
	}
	data, _, terr := p.readLimited(key, maxInitSize, "init segment")
	if terr != nil {
		return nil, terr
	}
	in, err := cenc.ProtectInit(data, cp.cfg, cp.psshs)
	if err != nil {
		return nil, failf(CodeInputFormat, "%q: %v", key, err)
	}
	cp.inits[key] = in
	p.out = append(p.out, OutFile{Name: name, Playlist: in.Data, Size: int64(len(in.Data))})
	return in, nil
}

// protectSegment queues one media segment for planSegments (once per
// source object).
func (p *planner) protectSegment(cp *cencPlan, in *cenc.Init, key, name string) *taskError {
	if cp.done[key] {
		return nil
	}
	cp.done[key] = true
	if len(p.out)+len(cp.queue) >= maxOutputFiles {
		return failf(CodeInputFormat, "input references more than %d files", maxOutputFiles)
	}
	info, terr := p.stat(key)
	if terr != nil {
		return terr
	}
	if info.Size > maxSegmentSize {
		return failf(CodeInputFormat, "segment %q is %d bytes (limit %d)", key, info.Size, maxSegmentSize)
	}
	cp.queue = append(cp.queue, &segJob{key: key, name: name, in: in, info: info})
	return nil
}

// segJob is a media segment waiting to be planned.
type segJob struct {
	key, name string
	in        *cenc.Init
	info      store.ObjectInfo
	layout    *cenc.Layout
	ivs       uint64 // protected samples: IVs it takes
	terr      *taskError
}

// planWorkers is how many segments planning reads and scans at once: a
// segment read is mostly waiting on the store (one GET each), so a few
// at a time keep a remote store busy without holding many in memory.
const planWorkers = 4

// planSegments reads and scans the queued segments, planWorkers at a
// time, then hands out their sample IVs in queue order (each scanned
// from 0, then moved up by the IVs taken before it), so the plan is the
// same as a sequential one.
func (p *planner) planSegments(cp *cencPlan) *taskError {
	jobs := cp.queue
	cp.queue = nil
	next := make(chan *segJob)
	var wg sync.WaitGroup
	for range min(planWorkers, len(jobs)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range next {
				p.scanSegment(cp, j)
			}
		}()
	}
	for _, j := range jobs {
		next <- j
		if p.ctx.Err() != nil {
			break
		}
	}
	close(next)
	wg.Wait()
	for _, j := range jobs {
		if j.terr != nil {
			return j.terr
		}
		if j.layout == nil {
			return failf(CodeOperationFailed, "planning stopped: %v", p.ctx.Err())
		}
		for bi := range j.layout.Boxes {
			for ti := range j.layout.Boxes[bi].Trafs {
				if t := &j.layout.Boxes[bi].Trafs[ti]; t.Protected {
					t.FirstIV += cp.nextIV
				}
			}
		}
		cp.nextIV += j.ivs
		p.out = append(p.out, OutFile{Name: j.name, Size: j.layout.Size, CENC: j.layout,
			Parts: []OutPart{{Key: j.key, ETag: j.info.ETag, Len: j.info.Size}}})
	}
	return nil
}

// scanSegment reads one segment whole (the version listed: If-Match) and
// plans it; it runs on a planning worker and touches only j.
func (p *planner) scanSegment(cp *cencPlan, j *segJob) {
	rc, err := p.st.OpenMatch(p.ctx, p.bucket, j.key, j.info.ETag, 0, j.info.Size)
	if err != nil {
		j.terr = storeFailure(j.key, err)
		return
	}
	// Read into one buffer of the listed size (and a byte more, to see a
	// longer object): io.ReadAll would grow it by doubling, several times
	// the segment in garbage for the GC, per segment.
	data := make([]byte, j.info.Size+1)
	n, err := io.ReadFull(rc, data)
	rc.Close()
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		err = nil // shorter than listed: caught below
	}
	data = data[:n]
	if err != nil {
		j.terr = storeFailure(j.key, err)
		return
	}
	if int64(len(data)) != j.info.Size {
		j.terr = failf(CodeOperationFailed, "segment %q: read %d bytes, listed %d (changed while planning?)", j.key, len(data), j.info.Size)
		return
	}
	l, err := cenc.Scan(data, j.in, cp.cfg, &j.ivs)
	if err != nil {
		j.terr = failf(CodeInputFormat, "segment %q: %v", j.key, err)
		return
	}
	j.layout = l
}

// planDASH plans a DASH presentation: every Representation's init and
// media segments, and the MPD with ContentProtection added to each
// AdaptationSet with a protected track.
func (p *planner) planDASH(cp *cencPlan) *taskError {
	in := p.rec.Input.Object
	data, terr := p.readObject(in)
	if terr != nil {
		return terr
	}
	mpd, err := dash.Parse(data)
	if err != nil {
		return failf(CodeInputFormat, "MPD %q: %v", in, err)
	}
	exists := func(uri string) bool {
		key, _, terr := p.resolve(in, uri)
		if terr != nil {
			return false
		}
		_, terr = p.stat(key)
		return terr == nil
	}
	reps, err := mpd.Representations(exists)
	if err != nil {
		return failf(CodeInputFormat, "MPD %q: %v", in, err)
	}
	// The AdaptationSets holding a protected Representation, in MPD order:
	// they get the ContentProtection elements.
	protectedAS := map[*dash.Node]bool{}
	var order []*dash.Node
	noteProtected := func(protected bool, as *dash.Node) {
		if protected && !protectedAS[as] {
			protectedAS[as] = true
			order = append(order, as)
		}
	}
	for _, r := range reps {
		if r.File != "" {
			init, terr := p.protectSingleFile(cp, in, r)
			if terr != nil {
				return terr
			}
			noteProtected(init.Protected, r.AS)
			continue
		}
		if r.Init == "" {
			return failf(CodeInputFormat, "MPD %q: Representation %q has no initialization segment (Common Encryption signals in it)", in, r.ID)
		}
		key, name, terr := p.resolve(in, r.Init)
		if terr != nil {
			return terr
		}
		init, terr := p.protectInit(cp, key, name)
		if terr != nil {
			return terr
		}
		noteProtected(init.Protected, r.AS)
		for _, s := range r.Segments {
			key, name, terr := p.resolve(in, s)
			if terr != nil {
				return terr
			}
			if terr := p.protectSegment(cp, init, key, name); terr != nil {
				return terr
			}
		}
		if terr := p.planSegments(cp); terr != nil {
			return terr
		}
	}
	mpd.SetNamespace("cenc", "urn:mpeg:cenc:2013")
	for _, as := range order {
		as.InsertEarly(p.contentProtection(mpd, cp)...)
	}
	top := p.rec.Output.FileName
	if top == "" {
		top = path.Base(in)
	}
	out := mpd.Bytes()
	p.out = append(p.out, OutFile{Name: top, Playlist: out, Size: int64(len(out))})
	return nil
}

// protectSingleFile plans a single-file Representation (SegmentBase, or a
// SegmentList of byte ranges): the file is read once, box by box (never
// whole in memory), its init replaced by the protected one, its moofs
// planned, its sidx rewritten; the MPD's byte ranges are moved to the
// new layout.
func (p *planner) protectSingleFile(cp *cencPlan, mpdKey string, r dash.Rep) (*cenc.Init, *taskError) {
	key, name, terr := p.resolve(mpdKey, r.File)
	if terr != nil {
		return nil, terr
	}
	if cp.singles == nil {
		cp.singles = map[string]*singleFile{}
	}
	sf := cp.singles[key]
	if sf == nil {
		var terr *taskError
		if sf, terr = p.scanSingleFile(cp, key, name, r.InitEnd); terr != nil {
			return nil, terr
		}
		cp.singles[key] = sf
	}
	for _, ra := range r.Ranges {
		first, ok1 := sf.layout.OutOffset(ra.First)
		end, ok2 := sf.layout.OutOffset(ra.Last + 1)
		if !ok1 || !ok2 {
			return nil, failf(CodeInputFormat, "MPD %q: Representation %q: %s@%s %d-%d does not start and end at boxes of %q",
				mpdKey, r.ID, ra.Node.Name.Local, ra.Attr, ra.First, ra.Last, key)
		}
		ra.Set(first, end-1)
	}
	return sf.init, nil
}

// singleFile is a planned single-file Representation's file.
type singleFile struct {
	init   *cenc.Init
	layout *cenc.Layout
}

func (p *planner) scanSingleFile(cp *cencPlan, key, name string, initEnd int64) (*singleFile, *taskError) {
	info, terr := p.stat(key)
	if terr != nil {
		return nil, terr
	}
	if initEnd > maxInitSize || initEnd > info.Size {
		return nil, failf(CodeInputFormat, "%q: init range of %d bytes (file %d, limit %d)", key, initEnd, info.Size, maxInitSize)
	}
	rc, err := p.st.Open(p.ctx, p.bucket, key, 0, -1)
	if err != nil {
		return nil, storeFailure(key, err)
	}
	defer rc.Close()
	br := bufio.NewReaderSize(rc, 1<<20)
	initData := make([]byte, initEnd)
	if _, err := io.ReadFull(br, initData); err != nil {
		return nil, storeFailure(key, err)
	}
	init, err := cenc.ProtectInit(initData, cp.cfg, cp.psshs)
	if err != nil {
		return nil, failf(CodeInputFormat, "%q: %v", key, err)
	}
	sc := cenc.NewScanner(init, cp.cfg, &cp.nextIV)
	sc.Replace(initEnd, init.Data)
	for off := initEnd; off < info.Size; {
		box, err := readBox(br, info.Size-off)
		if err != nil {
			return nil, failf(CodeInputFormat, "%q: box at %d: %v", key, off, err)
		}
		if err := sc.Add(box); err != nil {
			return nil, failf(CodeInputFormat, "%q: %v", key, err)
		}
		off += int64(len(box))
	}
	l, err := sc.Layout()
	if err != nil {
		return nil, failf(CodeInputFormat, "%q: %v", key, err)
	}
	p.out = append(p.out, OutFile{Name: name, Size: l.Size, CENC: l,
		Parts: []OutPart{{Key: key, ETag: info.ETag, Len: info.Size}}})
	return &singleFile{init: init, layout: l}, nil
}

// readBox reads one whole top-level box (at most left bytes, and at most
// maxSegmentSize).
func readBox(r *bufio.Reader, left int64) ([]byte, error) {
	hdr, err := r.Peek(8)
	if err != nil {
		return nil, fmt.Errorf("reading a box header: %w", err)
	}
	size := int64(binary.BigEndian.Uint32(hdr))
	switch size {
	case 0:
		size = left
	case 1:
		h16, err := r.Peek(16)
		if err != nil {
			return nil, fmt.Errorf("reading a box header: %w", err)
		}
		size = int64(binary.BigEndian.Uint64(h16[8:]))
	}
	if size < 8 || size > left {
		return nil, fmt.Errorf("%q box of %d bytes does not fit in the %d left", hdr[4:8], size, left)
	}
	if size > maxSegmentSize {
		return nil, fmt.Errorf("%q box of %d bytes (limit %d)", hdr[4:8], size, maxSegmentSize)
	}
	box := make([]byte, size)
	if _, err := io.ReadFull(r, box); err != nil {
		return nil, fmt.Errorf("reading a %q box: %w", hdr[4:8], err)
	}
	return box, nil
}

// contentProtection is the DASH signalling of an AdaptationSet: the
// mp4protection descriptor with the default KID, then one per DRM with
// its PSSH (PlayReady also its PlayReady Object; ClearKey its license URL).
func (p *planner) contentProtection(mpd *dash.MPD, cp *cencPlan) []*dash.Node {
	kid := p.rec.KID
	nodes := []*dash.Node{dash.NewNode("ContentProtection", "schemeIdUri", "urn:mpeg:dash:mp4protection:2011",
		"value", string(cp.cfg.Scheme), "cenc:default_KID", kid)}
	for _, ps := range cp.psshs {
		psshB64 := base64.StdEncoding.EncodeToString(ps.Box)
		switch ps.DRM {
		case cenc.PlayReady:
			mpd.SetNamespace("mspr", "urn:microsoft:playready")
			nodes = append(nodes, dash.NewNode("ContentProtection", "schemeIdUri", "urn:uuid:"+ps.SystemID, "value", "MSPR 2.0").With(
				dash.NewNode("cenc:pssh").WithText(psshB64),
				dash.NewNode("mspr:pro").WithText(base64.StdEncoding.EncodeToString(ps.PRO))))
		case cenc.ClearKey:
			mpd.SetNamespace("clearkey", "http://dashif.org/guidelines/clearKey")
			n := dash.NewNode("ContentProtection", "schemeIdUri", "urn:uuid:"+cenc.ClearKeyDASHSystemID, "value", "ClearKey1.0")
			if p.rec.KeyURL != "" {
				n.With(dash.NewNode("clearkey:Laurl", "Lic_type", "EME-1.0").WithText(p.rec.KeyURL))
			}
			nodes = append(nodes, n.With(dash.NewNode("cenc:pssh").WithText(psshB64)))
		default:
			name := map[string]string{cenc.Widevine: "Widevine", cenc.ChinaDRM: "ChinaDRM"}[ps.DRM]
			nodes = append(nodes, dash.NewNode("ContentProtection", "schemeIdUri", "urn:uuid:"+ps.SystemID, "value", name).With(
				dash.NewNode("cenc:pssh").WithText(psshB64)))
		}
	}
	return nodes
}

// planHLSCENC plans fMP4 HLS with Common Encryption: master playlists are
// served verbatim; each media playlist's init sections and segments are
// protected and the playlist gets one EXT-X-KEY per DRM before its first
// EXT-X-MAP.
func (p *planner) planHLSCENC(cp *cencPlan) *taskError {
	in := p.rec.Input.Object
	data, pl, terr := p.readPlaylist(in)
	if terr != nil {
		return terr
	}
	top := p.rec.Output.FileName
	if top == "" {
		top = path.Base(in)
	}
	if !pl.Master {
		return p.planMediaCENC(cp, in, top, data, pl)
	}
	p.out = append(p.out, OutFile{Name: top, Playlist: data, Size: int64(len(data))})
	if len(pl.Refs) > maxVariants {
		return failf(CodeInputFormat, "master playlist %q references %d playlists (limit %d)", in, len(pl.Refs), maxVariants)
	}
	for _, ref := range pl.Refs {
		key, name, terr := p.resolve(in, ref)
		if terr != nil {
			return terr
		}
		data, mpl, terr := p.readPlaylist(key)
		if terr != nil {
			return terr
		}
		if mpl.Master {
			return failf(CodeInputFormat, "playlist %q referenced by master %q is itself a master playlist", key, in)
		}
		if err := p.planMediaCENC(cp, key, name, data, mpl); err != nil {
			return err
		}
	}
	return nil
}

func (p *planner) planMediaCENC(cp *cencPlan, key, name string, data []byte, pl *hls.Playlist) *taskError {
	if !pl.Ended {
		return failf(CodeInputFormat, "playlist %q is live (no EXT-X-ENDLIST): only finished (VOD) playlists can be encrypted", key)
	}
	if len(pl.Maps) == 0 {
		if pl.IFramesOnly || len(pl.Segments) == 0 {
			p.out = append(p.out, OutFile{Name: name, Playlist: data, Size: int64(len(data))})
			return nil
		}
		return failf(CodeInputFormat, "playlist %q has MPEG-TS segments but the input's first playlist is fMP4: multidrm needs every playlist fMP4", key)
	}
	if pl.IFramesOnly {
		return failf(CodeInputFormat, "playlist %q: fMP4 I-frame playlists with multidrm are not supported yet", key)
	}
	if pl.Maps[0].ByteRange != nil {
		return p.planSingleFileHLS(cp, key, name, data, pl)
	}
	inits := make([]*cenc.Init, len(pl.Maps))
	for i, m := range pl.Maps {
		if m.ByteRange != nil {
			return failf(CodeInputFormat, "playlist %q: EXT-X-MAPs with and without BYTERANGE", key)
		}
		ikey, iname, terr := p.resolve(key, m.URI)
		if terr != nil {
			return terr
		}
		if inits[i], terr = p.protectInit(cp, ikey, iname); terr != nil {
			return terr
		}
	}
	for _, s := range pl.Segments {
		if s.ByteRange != nil {
			return failf(CodeInputFormat, "playlist %q: EXT-X-BYTERANGE segments need an EXT-X-MAP with BYTERANGE (single-file fMP4)", key)
		}
		if s.Map < 0 {
			return failf(CodeInputFormat, "playlist %q: segment %q comes before any EXT-X-MAP", key, s.URI)
		}
		skey, sname, terr := p.resolve(key, s.URI)
		if terr != nil {
			return terr
		}
		if terr := p.protectSegment(cp, inits[s.Map], skey, sname); terr != nil {
			return terr
		}
	}
	if terr := p.planSegments(cp); terr != nil {
		return terr
	}
	out, err := insertBeforeFirstMap(data, p.hlsKeyLines(cp))
	if err != nil {
		return failf(CodeInputFormat, "playlist %q: %v", key, err)
	}
	p.out = append(p.out, OutFile{Name: name, Playlist: out, Size: int64(len(out))})
	return nil
}

// planSingleFileHLS plans single-file fMP4 HLS (ffmpeg's
// -hls_flags single_file): one file holding the init (the EXT-X-MAP range,
// from 0) and every segment as an EXT-X-BYTERANGE. The file is planned as
// a single-file DASH Representation is, and the ranges are moved to its
// new layout.
func (p *planner) planSingleFileHLS(cp *cencPlan, key, name string, data []byte, pl *hls.Playlist) *taskError {
	if len(pl.Maps) != 1 || pl.Maps[0].ByteRange == nil || pl.Maps[0].ByteRange.Off != 0 {
		return failf(CodeInputFormat, "playlist %q: single-file fMP4 with multidrm needs one EXT-X-MAP whose BYTERANGE starts the file", key)
	}
	fkey, fname, terr := p.resolve(key, pl.Maps[0].URI)
	if terr != nil {
		return terr
	}
	outs := make([]hls.SegmentOut, len(pl.Segments))
	for i, s := range pl.Segments {
		skey, _, terr := p.resolve(key, s.URI)
		if terr != nil {
			return terr
		}
		if skey != fkey || s.ByteRange == nil {
			return failf(CodeInputFormat, "playlist %q: segment %d is not a byte range of %q, the file of the EXT-X-MAP", key, i, fkey)
		}
	}
	if cp.singles == nil {
		cp.singles = map[string]*singleFile{}
	}
	sf := cp.singles[fkey]
	if sf == nil {
		var terr *taskError
		if sf, terr = p.scanSingleFile(cp, fkey, fname, pl.Maps[0].ByteRange.Len); terr != nil {
			return terr
		}
		cp.singles[fkey] = sf
	}
	move := func(r *hls.ByteRange) (*hls.ByteRange, bool) {
		a, ok1 := sf.layout.OutOffset(r.Off)
		z, ok2 := sf.layout.OutOffset(r.Off + r.Len)
		return &hls.ByteRange{Off: a, Len: z - a}, ok1 && ok2
	}
	for i, s := range pl.Segments {
		r, ok := move(s.ByteRange)
		if !ok {
			return failf(CodeInputFormat, "playlist %q: segment %d's byte range %d@%d does not start and end at boxes of %q", key, i, s.ByteRange.Len, s.ByteRange.Off, fkey)
		}
		outs[i].ByteRange = r
	}
	mr, _ := move(pl.Maps[0].ByteRange)
	out, err := hls.RewriteMedia(data, pl, outs, []hls.MapOut{{ByteRange: mr}})
	if err == nil {
		out, err = insertBeforeFirstMap(out, p.hlsKeyLines(cp))
	}
	if err != nil {
		return failf(CodeInputFormat, "playlist %q: %v", key, err)
	}
	p.out = append(p.out, OutFile{Name: name, Playlist: out, Size: int64(len(out))})
	return nil
}

// hlsKeyLines are the EXT-X-KEY tags of the DRMs: METHOD SAMPLE-AES-CTR
// (cenc) or SAMPLE-AES (cbcs), the KEYID, and per DRM its KEYFORMAT with
// the PSSH (PlayReady: its PlayReady Object) as a data URI; ClearKey uses
// the license URL with KEYFORMAT "identity".
func (p *planner) hlsKeyLines(cp *cencPlan) []string {
	method := "SAMPLE-AES-CTR"
	switch cp.cfg.Scheme {
	case cenc.CBCS:
		method = "SAMPLE-AES"
	case cenc.SM4S:
		// No HLS method is registered for SM4 sample encryption; named
		// like the whole-segment SM4-CBC method mpcfs writes.
		method = "SM4-SAMPLE"
	}
	keyID := "0x" + hex.EncodeToString(cp.cfg.KID[:])
	var lines []string
	for _, ps := range cp.psshs {
		var uri, format string
		switch ps.DRM {
		case cenc.PlayReady:
			uri = "data:text/plain;charset=UTF-16;base64," + base64.StdEncoding.EncodeToString(ps.PRO)
			format = "com.microsoft.playready"
		case cenc.ClearKey:
			uri, format = p.rec.KeyURL, "identity"
		default:
			uri = "data:text/plain;base64," + base64.StdEncoding.EncodeToString(ps.Box)
			format = "urn:uuid:" + ps.SystemID
		}
		lines = append(lines, fmt.Sprintf(`#EXT-X-KEY:METHOD=%s,URI="%s",KEYID=%s,KEYFORMAT="%s",KEYFORMATVERSIONS="1"`, method, uri, keyID, format))
	}
	return lines
}

// insertBeforeFirstMap inserts lines before the playlist's first
// EXT-X-MAP line, keeping every source line and its line endings.
func insertBeforeFirstMap(data []byte, lines []string) ([]byte, error) {
	s := string(data)
	for off := 0; off < len(s); {
		end := strings.IndexByte(s[off:], '\n')
		next := len(s)
		if end >= 0 {
			next = off + end + 1
		}
		if strings.HasPrefix(s[off:next], "#EXT-X-MAP:") {
			nl := "\n"
			if strings.HasSuffix(s[off:next], "\r\n") {
				nl = "\r\n"
			}
			return []byte(s[:off] + strings.Join(lines, nl) + nl + s[off:]), nil
		}
		off = next
	}
	return nil, fmt.Errorf("no EXT-X-MAP line")
}
