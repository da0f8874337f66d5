package store

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// S3Config says where an S3-compatible store is and how to sign requests.
type S3Config struct {
	Endpoint string // "http://127.0.0.1:9000" or "https://obs.example.com"
	// Region is the signing region; "" lets minio-go ask the service
	// (GetBucketLocation), which MinIO and AWS answer.
	Region string
	// AccessKey and SecretKey, when set, are used as they are (tests, the
	// bench). Empty: the AWS credential chain (CredentialChain).
	AccessKey string
	SecretKey string
	// CABundle is a PEM file of CA certificates trusted on top of the
	// system's (a private CA); "" trusts the system pool only, which Go
	// reads from SSL_CERT_FILE / SSL_CERT_DIR when set.
	CABundle string
	// PathStyle forces http://host/bucket/key addressing; false lets
	// minio-go choose (virtual-hosted for AWS, path style elsewhere).
	PathStyle bool
}

// S3ConfigFromEnv is the config `mpcfs mount` starts from: credentials come
// from the AWS chain (never from the command line), the signing region from
// AWS_REGION (or AWS_DEFAULT_REGION), the CA bundle from AWS_CA_BUNDLE.
func S3ConfigFromEnv(endpoint string) S3Config {
	return S3Config{Endpoint: endpoint, Region: firstEnv("AWS_REGION", "AWS_DEFAULT_REGION"), CABundle: os.Getenv("AWS_CA_BUNDLE")}
}

func firstEnv(names ...string) string {
	for _, n := range names {
		if v := os.Getenv(n); v != "" {
			return v
		}
	}
	return ""
}

// CredentialChain is where credentials come from when none are given, in
// the AWS SDKs' order, all from minio-go: the environment
// (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN), the shared
// credentials file (AWS_SHARED_CREDENTIALS_FILE or ~/.aws/credentials,
// profile AWS_PROFILE or "default"), then an IAM role (EC2 instance
// profile, ECS task role, EKS web identity / IRSA).
func CredentialChain() *credentials.Credentials {
	return credentials.NewChainCredentials(credentialProviders())
}

func credentialProviders() []credentials.Provider {
	return []credentials.Provider{
		&credentials.EnvAWS{},
		&credentials.FileAWSCredentials{},
		&credentials.IAM{Client: &http.Client{Timeout: 5 * time.Second, Transport: http.DefaultTransport}},
	}
}

// CredentialSource names which link of the chain gives credentials (for
// error messages; never the credentials themselves). IAM is not probed:
// it may take seconds off EC2.
func CredentialSource() string {
	if v, err := (&credentials.EnvAWS{}).Retrieve(); err == nil && v.AccessKeyID != "" {
		if v.SessionToken != "" {
			return "environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN)"
		}
		return "environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)"
	}
	if v, err := (&credentials.FileAWSCredentials{}).Retrieve(); err == nil && v.AccessKeyID != "" {
		file := firstEnv("AWS_SHARED_CREDENTIALS_FILE")
		if file == "" {
			file = "~/.aws/credentials"
		}
		return fmt.Sprintf("shared credentials file %s, profile %q", file, orDefault(os.Getenv("AWS_PROFILE"), "default"))
	}
	return "an IAM role, if any (no AWS_ACCESS_KEY_ID in the environment, no ~/.aws/credentials profile)"
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// S3 is a Store over an S3-compatible service (MinIO, AWS S3, Huawei OBS).
// It is safe for concurrent use; all requests share one pooled transport.
type S3 struct {
	core     *minio.Core
	endpoint string // redacted, for messages
	region   string // configured signing region; "" asks each bucket's
}

// maxRetries bounds minio-go's retry loop (default 10, ~8 s of back-off) so
// a vanished server is reported as ErrUnavailable within about a second.
const maxRetries = 3

// NewS3 makes a client; it does not contact the service.
func NewS3(cfg S3Config) (*S3, error) {
	u, err := url.Parse(cfg.Endpoint)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") || u.User != nil {
		return nil, fmt.Errorf("endpoint %q must be http://host[:port] or https://host[:port] (credentials go in the environment)", redact(cfg.Endpoint))
	}
	tr := transport()
	// A bundle matters for TLS only: a plain-http endpoint (a local MinIO)
	// must not fail because of a machine-wide AWS_CA_BUNDLE.
	if cfg.CABundle != "" && u.Scheme == "https" {
		pool, err := caPool(cfg.CABundle)
		if err != nil {
			return nil, err
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	creds := CredentialChain()
	if cfg.AccessKey != "" {
		creds = credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, "")
	}
	lookup := minio.BucketLookupAuto
	if cfg.PathStyle {
		lookup = minio.BucketLookupPath
	}
	core, err := minio.NewCore(u.Host, &minio.Options{
		Creds:        creds,
		Secure:       u.Scheme == "https",
		Region:       cfg.Region,
		Transport:    tr,
		MaxRetries:   maxRetries,
		BucketLookup: lookup,
	})
	if err != nil {
		return nil, fmt.Errorf("S3 client for %s: %v", u.Host, err)
	}
	return &S3{core: core, endpoint: u.Redacted(), region: cfg.Region}, nil
}

// caPool is the system's CAs plus those of a PEM file.
func caPool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("CA bundle: %w (set by --ca-bundle or AWS_CA_BUNDLE)", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("CA bundle %s holds no PEM certificate (set by --ca-bundle or AWS_CA_BUNDLE)", file)
	}
	return pool, nil
}

// Check makes one signed request against bucket (a one-key listing) so a
// mount fails at start, with the cause and the fix, instead of at the
// first ls. A missing bucket is ErrNotExist (the caller may create it).
func (s *S3) Check(ctx context.Context, bucket string) error {
	_, err := s.core.ListObjectsV2(bucket, "", "", "", "", 1)
	if err == nil {
		return nil
	}
	return explain(s.endpoint, bucket, err)
}

// explain turns a failed first request into a message naming the cause and
// the fix: unreachable endpoint, TLS, credentials, region, missing bucket.
func explain(endpoint, bucket string, err error) error {
	resp := minio.ToErrorResponse(err)
	var certErr *tls.CertificateVerificationError
	var unknownCA x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var recordErr tls.RecordHeaderError
	switch {
	case errors.As(err, &certErr) || errors.As(err, &unknownCA) || errors.As(err, &hostErr):
		return fmt.Errorf("TLS failure talking to %s: %v; if it uses a private CA, pass --ca-bundle FILE (or set AWS_CA_BUNDLE or SSL_CERT_FILE) with that CA's PEM certificate", endpoint, err)
	case errors.As(err, &recordErr) || strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"):
		return fmt.Errorf("TLS failure talking to %s: the service speaks plain HTTP: use an http:// endpoint (%v)", endpoint, err)
	case resp.Code == "InvalidAccessKeyId" || resp.Code == "SignatureDoesNotMatch" || resp.Code == "InvalidToken" ||
		resp.Code == "ExpiredToken" || resp.Code == "InvalidTokenId":
		return fmt.Errorf("%s refused the credentials from %s (%s: %s): fix AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for temporary ones), or AWS_PROFILE / AWS_SHARED_CREDENTIALS_FILE",
			endpoint, CredentialSource(), resp.Code, resp.Message)
	case resp.Code == "AuthorizationHeaderMalformed" || resp.Code == "InvalidRegion":
		region := resp.Region
		return fmt.Errorf("%s wants another signing region (%s: %s): pass --s3-region %s (or set AWS_REGION)", endpoint, resp.Code, resp.Message, orDefault(region, "REGION"))
	case resp.Code == "AccessDenied" || resp.StatusCode == http.StatusForbidden:
		return fmt.Errorf("%s denied access to bucket %q with credentials from %s (%s): check the credentials, or grant s3:ListBucket, s3:GetObject and s3:PutObject on it", endpoint, bucket, CredentialSource(), resp.Message)
	case resp.Code == "NoSuchBucket":
		return fmt.Errorf("bucket %q does not exist on %s: %w", bucket, endpoint, ErrNotExist)
	case unavailable(err, resp):
		return fmt.Errorf("cannot reach the S3 endpoint %s: %w: %v; check --endpoint (scheme, host, port) and that the service is running and reachable", endpoint, ErrUnavailable, err)
	}
	return fmt.Errorf("%s, bucket %q: %w", endpoint, bucket, err)
}

// redact hides a user:password@ part of an endpoint so it never reaches an
// error message or log.
func redact(endpoint string) string {
	if u, err := url.Parse(endpoint); err == nil {
		return u.Redacted()
	}
	if i := strings.LastIndex(endpoint, "@"); i >= 0 {
		return "xxxxx" + endpoint[i:]
	}
	return endpoint
}

// transport pools connections: the FUSE layer makes many concurrent ranged
// GETs. Timeouts turn a vanished server into an error, not a hang.
func transport() *http.Transport {
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          256,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true, // ranges of media, byte for byte
	}
}

// mapErr wraps a minio error with ErrNotExist or ErrUnavailable, keeping
// the original in the chain (errors.Is/As see both, the message shows both).
func mapErr(what string, err error) error {
	if err == nil {
		return nil
	}
	resp := minio.ToErrorResponse(err)
	switch {
	case resp.Code == "NoSuchKey" || resp.Code == "NoSuchBucket" || resp.StatusCode == http.StatusNotFound:
		return fmt.Errorf("%s: %w: %w", what, ErrNotExist, err)
	case resp.Code == "PreconditionFailed" || resp.StatusCode == http.StatusPreconditionFailed:
		return fmt.Errorf("%s: %w: %w", what, ErrChanged, err)
	case unavailable(err, resp):
		return fmt.Errorf("%s: %w: %w", what, ErrUnavailable, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// unavailable reports errors that mean "could not reach the store" rather
// than an answer from it: network and DNS errors, refused or reset
// connections, timeouts, early EOF, and 5xx (server overloaded or starting).
// A caller's own cancellation is not unavailability.
func unavailable(err error, resp minio.ErrorResponse) bool {
	if errors.Is(err, context.Canceled) {
		return false
	}
	var netErr net.Error
	return errors.As(err, &netErr) || minio.IsNetworkOrHostDown(err, true) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, context.DeadlineExceeded) || resp.StatusCode >= 500
}

// LearnRegions asks, once, the signing region of every bucket (at most
// maxLearnedBuckets, a few at a time), so that no later request waits a
// round trip for it: with no region configured, minio-go asks a bucket's
// location before the first request to it, and the first byte of a
// segment read from a bucket not yet used paid that. It does nothing when
// a region is configured; failures are left for the real requests to
// report. A mount runs it in the background at start.
func (s *S3) LearnRegions(ctx context.Context) {
	if s.region != "" {
		return
	}
	buckets, err := s.Buckets(ctx)
	if err != nil {
		return
	}
	if len(buckets) > maxLearnedBuckets {
		buckets = buckets[:maxLearnedBuckets]
	}
	sem := make(chan struct{}, learnersAtOnce)
	var wg sync.WaitGroup
	for _, b := range buckets {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			s.core.Client.GetBucketLocation(ctx, b) // minio-go caches the answer
		}()
	}
	wg.Wait()
}

// maxLearnedBuckets and learnersAtOnce bound LearnRegions: a mount start
// makes at most one listing and that many small requests.
const (
	maxLearnedBuckets = 64
	learnersAtOnce    = 8
)

// Buckets lists every bucket.
func (s *S3) Buckets(ctx context.Context) ([]string, error) {
	bs, err := s.core.Client.ListBuckets(ctx)
	if err != nil {
		return nil, mapErr("listing buckets", err)
	}
	names := make([]string, len(bs))
	for i, b := range bs {
		names[i] = b.Name
	}
	sort.Strings(names)
	return names, nil
}

// BucketExists reports whether the bucket exists.
func (s *S3) BucketExists(ctx context.Context, bucket string) (bool, error) {
	ok, err := s.core.Client.BucketExists(ctx, bucket)
	if err != nil {
		err = mapErr("bucket "+bucket, err)
		if errors.Is(err, ErrNotExist) {
			return false, nil
		}
	}
	return ok, err
}

// MakeBucket creates a bucket (the task store's).
func (s *S3) MakeBucket(ctx context.Context, bucket string) error {
	return mapErr("creating bucket "+bucket, s.core.Client.MakeBucket(ctx, bucket, minio.MakeBucketOptions{}))
}

// List returns the objects and sub-prefixes directly under prefix (one
// delimiter "/" listing, paged by minio-go). A folder-marker object equal to
// the prefix itself is skipped.
func (s *S3) List(ctx context.Context, bucket, prefix string) (Listing, error) {
	ctx, cancel := context.WithCancel(ctx) // stops minio-go's lister if we return early
	defer cancel()
	var out Listing
	opts := minio.ListObjectsOptions{Prefix: prefix, Recursive: false}
	for o := range s.core.Client.ListObjects(ctx, bucket, opts) {
		if o.Err != nil {
			return Listing{}, mapErr("listing "+bucket+"/"+prefix, o.Err)
		}
		switch {
		case strings.HasSuffix(o.Key, "/") && o.Key != prefix:
			out.Prefixes = append(out.Prefixes, o.Key)
		case !strings.HasSuffix(o.Key, "/"):
			out.Objects = append(out.Objects, info(o))
		}
	}
	sort.Slice(out.Objects, func(i, j int) bool { return out.Objects[i].Key < out.Objects[j].Key })
	sort.Strings(out.Prefixes)
	return out, nil
}

// HasPrefix lists at most one key under prefix: the answer to "is this a
// folder?" costs one small request even for a folder of a million objects.
// The iterator makes no request past the page we stop in (the channel
// form's goroutine may already ask for the next one).
func (s *S3) HasPrefix(ctx context.Context, bucket, prefix string) (bool, error) {
	opts := minio.ListObjectsOptions{Prefix: prefix, MaxKeys: 1}
	for o := range s.core.Client.ListObjectsIter(ctx, bucket, opts) {
		if o.Err != nil {
			return false, mapErr("listing "+bucket+"/"+prefix, o.Err)
		}
		return true, nil
	}
	return false, nil
}

// info converts minio's ObjectInfo; ETags lose their quotes so both listing
// and HEAD give the same string.
func info(o minio.ObjectInfo) ObjectInfo {
	return ObjectInfo{Key: o.Key, Size: o.Size, ETag: strings.Trim(o.ETag, `"`), ModTime: o.LastModified}
}

// Stat describes one object.
func (s *S3) Stat(ctx context.Context, bucket, key string) (ObjectInfo, error) {
	o, err := s.core.Client.StatObject(ctx, bucket, key, minio.StatObjectOptions{})
	if err != nil {
		return ObjectInfo{}, mapErr(bucket+"/"+key, err)
	}
	return info(o), nil
}

// Open makes one ranged GET via minio.Core, which sends the request at once,
// so a missing object or dead server is reported here rather than at the
// first Read. length == 0 makes no request at all.
func (s *S3) Open(ctx context.Context, bucket, key string, off, length int64) (io.ReadCloser, error) {
	return s.OpenMatch(ctx, bucket, key, "", off, length)
}

// OpenMatch is Open with If-Match: the service answers 412 (ErrChanged)
// when the object was replaced, so no byte of another version is read.
func (s *S3) OpenMatch(ctx context.Context, bucket, key, etag string, off, length int64) (io.ReadCloser, error) {
	if off < 0 {
		return nil, fmt.Errorf("%s/%s: negative offset %d", bucket, key, off)
	}
	if length == 0 {
		return io.NopCloser(bytes.NewReader(nil)), nil
	}
	var opts minio.GetObjectOptions
	var err error
	switch {
	case length > 0:
		err = opts.SetRange(off, off+length-1) // inclusive end
	case off > 0:
		err = opts.SetRange(off, 0) // "bytes=off-": to the end
	} // off == 0, length < 0: whole object, no Range header
	if err == nil && etag != "" {
		err = opts.SetMatchETag(etag)
	}
	if err != nil {
		return nil, fmt.Errorf("%s/%s: %w", bucket, key, err)
	}
	// A server that stops answering (hung, frozen, a dead peer whose
	// connection stays open) must give an error within stallTimeout, not
	// after the transport's header timeout or never (a body stalls
	// without any timeout): a watchdog cancels the request when the
	// response or the next bytes of the body take longer.
	ctx, cancel := context.WithCancelCause(ctx)
	watchdog := time.AfterFunc(stallTimeout, func() { cancel(errStalled) })
	body, info, _, err := s.core.GetObject(ctx, bucket, key, opts)
	watchdog.Stop()
	if err != nil {
		cancel(nil)
		return nil, stallErr(ctx, bucket+"/"+key, err)
	}
	left := length
	if length < 0 {
		left = -1
	}
	if info.Size >= 0 {
		left = info.Size // a range past the end is cut to the object
	}
	return &s3Body{ReadCloser: body, what: bucket + "/" + key, left: left, etag: strings.Trim(info.ETag, `"`), size: left,
		ctx: ctx, cancel: cancel, watchdog: watchdog}, nil
}

// stallTimeout is how long a GET may wait for its response or for the next
// bytes of its body before it fails with ErrUnavailable.
const stallTimeout = 3 * time.Second

var errStalled = fmt.Errorf("%w: no answer within %v", ErrUnavailable, stallTimeout)

// stallErr maps err, naming a stall when the watchdog caused it.
func stallErr(ctx context.Context, what string, err error) error {
	if errors.Is(context.Cause(ctx), errStalled) {
		return fmt.Errorf("%s: %w", what, errStalled)
	}
	return mapErr(what, err)
}

// s3Body maps errors met while streaming a body (server gone mid-read)
// and bounds each read by the stall watchdog.
type s3Body struct {
	io.ReadCloser
	what     string
	left     int64 // bytes of the range not yet read; -1: unknown
	etag     string
	size     int64 // bytes of the response; -1: unknown
	ctx      context.Context
	cancel   context.CancelCauseFunc
	watchdog *time.Timer
}

func (b *s3Body) Read(p []byte) (int, error) {
	b.watchdog.Reset(stallTimeout)
	n, err := b.ReadCloser.Read(p)
	b.watchdog.Stop()
	if b.left >= 0 {
		b.left -= int64(n)
	}
	if err != nil && err != io.EOF {
		err = stallErr(b.ctx, b.what, err)
	}
	return n, err
}

func (b *s3Body) ETag() string  { return b.etag }
func (b *s3Body) Length() int64 { return b.size }

// Close lets the connection be reused when the whole range was read: Go's
// HTTP client keeps a connection only if the body was read to EOF, and
// with every byte read that last Read returns EOF without any I/O. (A body
// left half read is not drained: that could wait on a stalled server.)
func (b *s3Body) Close() error {
	if b.left == 0 {
		var one [1]byte
		b.ReadCloser.Read(one[:])
	}
	b.watchdog.Stop()
	err := b.ReadCloser.Close()
	b.cancel(nil)
	return err
}

// Put stores a whole object in one request (small objects: task records).
func (s *S3) Put(ctx context.Context, bucket, key string, data []byte) error {
	_, err := s.core.Client.PutObject(ctx, bucket, key, bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{})
	return mapErr("writing "+bucket+"/"+key, err)
}

// PutMatch is Put with If-Match (or If-None-Match: * for etag ""): S3 and
// MinIO answer 412 (ErrChanged) when the condition fails, and write
// nothing.
func (s *S3) PutMatch(ctx context.Context, bucket, key string, data []byte, etag string) (string, error) {
	var opts minio.PutObjectOptions
	if etag == "" {
		opts.SetMatchETagExcept("*")
	} else {
		opts.SetMatchETag(etag)
	}
	info, err := s.core.Client.PutObject(ctx, bucket, key, bytes.NewReader(data), int64(len(data)), opts)
	if err != nil {
		if resp := minio.ToErrorResponse(err); resp.StatusCode == http.StatusConflict || resp.Code == "ConditionalRequestConflict" {
			// A concurrent conditional write won (AWS answers 409).
			return "", fmt.Errorf("writing %s/%s: %w: %w", bucket, key, ErrChanged, err)
		}
		return "", mapErr("writing "+bucket+"/"+key, err)
	}
	return strings.Trim(info.ETag, `"`), nil
}

// Delete removes an object; a missing one is not an error.
func (s *S3) Delete(ctx context.Context, bucket, key string) error {
	err := mapErr("deleting "+bucket+"/"+key, s.core.Client.RemoveObject(ctx, bucket, key, minio.RemoveObjectOptions{}))
	if errors.Is(err, ErrNotExist) {
		return nil
	}
	return err
}

var _ Store = (*S3)(nil)
