package store_test

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/mpcfs/mpcfs/store"
	"github.com/mpcfs/mpcfs/store/miniotest"
)

// clearAWSEnv leaves the credential chain only what a test sets.
func clearAWSEnv(t *testing.T) {
	for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY", "AWS_SECRET_KEY", "AWS_SESSION_TOKEN",
		"AWS_PROFILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_CA_BUNDLE",
		"AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	t.Setenv("HOME", t.TempDir()) // no ~/.aws/credentials of the machine's
}

// TestS3CredentialChain: with no keys in the config, the AWS chain is used:
// a named profile of a shared credentials file, then environment keys with
// a session token (temporary credentials from MinIO's STS). Negative
// controls: a profile with a wrong secret and a made-up session token are
// refused with a message naming where the credentials came from.
func TestS3CredentialChain(t *testing.T) {
	srv := miniotest.Start(t)
	srv.MakeBucket(t, "media")
	clearAWSEnv(t)
	credFile := filepath.Join(t.TempDir(), "credentials")
	os.WriteFile(credFile, []byte("[default]\naws_access_key_id = nobody\naws_secret_access_key = wrong-secret\n\n[mpcfs]\naws_access_key_id = "+
		srv.AccessKey+"\naws_secret_access_key = "+srv.SecretKey+"\n"), 0o600)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", credFile)
	check := func() error {
		st, err := store.NewS3(store.S3ConfigFromEnv(srv.Endpoint))
		if err != nil {
			t.Fatal(err)
		}
		return st.Check(t.Context(), "media")
	}

	t.Setenv("AWS_PROFILE", "mpcfs")
	if err := check(); err != nil {
		t.Errorf("AWS_PROFILE=mpcfs with a shared credentials file: %v", err)
	}
	t.Setenv("AWS_PROFILE", "default") // wrong secret
	err := check()
	if err == nil || !strings.Contains(err.Error(), "refused the credentials") || !strings.Contains(err.Error(), credFile) || !strings.Contains(err.Error(), `profile "default"`) {
		t.Errorf("a wrong profile secret: %v, want a message naming the file and profile", err)
	}
	if err != nil && strings.Contains(err.Error(), "wrong-secret") {
		t.Errorf("the error leaks the secret: %v", err)
	}

	// Temporary credentials: access key, secret and session token from
	// MinIO's STS AssumeRole, handed over in the environment.
	sts, err := credentials.NewSTSAssumeRole(srv.Endpoint, credentials.STSAssumeRoleOptions{AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, DurationSeconds: 900})
	if err != nil {
		t.Fatal(err)
	}
	v, err := sts.GetWithContext(nil)
	if err != nil || v.SessionToken == "" {
		t.Fatalf("STS AssumeRole: %v (token %v)", err, v.SessionToken != "")
	}
	t.Setenv("AWS_ACCESS_KEY_ID", v.AccessKeyID)
	t.Setenv("AWS_SECRET_ACCESS_KEY", v.SecretAccessKey)
	t.Setenv("AWS_SESSION_TOKEN", v.SessionToken)
	if err := check(); err != nil {
		t.Errorf("env keys with AWS_SESSION_TOKEN: %v", err)
	}
	t.Setenv("AWS_SESSION_TOKEN", "made-up")
	if err := check(); err == nil || !strings.Contains(err.Error(), "AWS_SESSION_TOKEN") {
		t.Errorf("a made-up session token: %v, want refused naming AWS_SESSION_TOKEN", err)
	}
}

// TestS3Explain: the first request's failures name the cause and the fix.
func TestS3Explain(t *testing.T) {
	srv := miniotest.Start(t)
	srv.MakeBucket(t, "media")
	clearAWSEnv(t)
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := "http://" + l.Addr().String()
	l.Close()
	cases := []struct {
		name string
		cfg  store.S3Config
		want string
	}{
		{"unreachable endpoint", store.S3Config{Endpoint: dead, AccessKey: "a", SecretKey: "b"}, "cannot reach the S3 endpoint"},
		{"wrong secret", store.S3Config{Endpoint: srv.Endpoint, AccessKey: srv.AccessKey, SecretKey: "nope-nope-nope"}, "refused the credentials"},
		{"https to an http service", store.S3Config{Endpoint: strings.Replace(srv.Endpoint, "http:", "https:", 1), AccessKey: "a", SecretKey: "b"}, "use an http:// endpoint"},
	}
	for _, c := range cases {
		st, err := store.NewS3(c.cfg)
		if err != nil {
			t.Fatal(err)
		}
		err = st.Check(t.Context(), "media")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
	err := srv.Store().Check(t.Context(), "no-such-bucket")
	if !errors.Is(err, store.ErrNotExist) || !strings.Contains(err.Error(), `"no-such-bucket" does not exist`) {
		t.Errorf("missing bucket: %v", err)
	}
	if err := srv.Store().Check(t.Context(), "media"); err != nil {
		t.Errorf("the control: %v", err)
	}
}

// TestS3PrivateCA: MinIO serving TLS with a certificate of a private CA is
// reached with the CA bundle (config field and AWS_CA_BUNDLE); without it
// the error is a TLS failure telling to pass --ca-bundle (the negative
// control), and a bundle without certificates is refused by name.
func TestS3PrivateCA(t *testing.T) {
	certsDir, caFile := miniotest.PrivateCA(t)
	srv := miniotest.StartWith(t, miniotest.Options{CertsDir: certsDir, CABundle: caFile})
	srv.MakeBucket(t, "media")
	srv.PutFile(t, "media", "a.txt", []byte("over TLS"))
	clearAWSEnv(t)
	t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey)

	t.Setenv("AWS_CA_BUNDLE", caFile)
	st, err := store.NewS3(store.S3ConfigFromEnv(srv.Endpoint))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Check(t.Context(), "media"); err != nil {
		t.Errorf("with AWS_CA_BUNDLE: %v", err)
	}
	if info, err := st.Stat(t.Context(), "media", "a.txt"); err != nil || info.Size != 8 {
		t.Errorf("stat over TLS: %+v %v", info, err)
	}

	t.Setenv("AWS_CA_BUNDLE", "")
	st, _ = store.NewS3(store.S3ConfigFromEnv(srv.Endpoint))
	err = st.Check(t.Context(), "media")
	if err == nil || !strings.Contains(err.Error(), "TLS failure") || !strings.Contains(err.Error(), "--ca-bundle") {
		t.Errorf("without the CA: %v, want a TLS failure naming --ca-bundle", err)
	}
	notPEM := filepath.Join(t.TempDir(), "empty.pem")
	os.WriteFile(notPEM, []byte("not a certificate"), 0o600)
	if _, err := store.NewS3(store.S3Config{Endpoint: srv.Endpoint, CABundle: notPEM}); err == nil || !strings.Contains(err.Error(), notPEM) {
		t.Errorf("a bundle without certificates: %v", err)
	}
	if _, err := store.NewS3(store.S3Config{Endpoint: "http://127.0.0.1:9", CABundle: notPEM}); err != nil {
		t.Errorf("a CA bundle stopped a plain-http endpoint: %v", err)
	}
}

// TestS3SigningRegion: the signing region is its own setting (MPC's
// location is not it): a server in eu-west-3 takes requests signed for
// eu-west-3 (given, or asked from the service when unset), and refuses
// ones signed for us-east-1 with a message naming --s3-region (the
// control).
func TestS3SigningRegion(t *testing.T) {
	srv := miniotest.StartWith(t, miniotest.Options{Region: "eu-west-3"})
	srv.MakeBucket(t, "media")
	clearAWSEnv(t)
	for _, region := range []string{"eu-west-3", ""} {
		st, _ := store.NewS3(store.S3Config{Endpoint: srv.Endpoint, Region: region, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey})
		if err := st.Check(t.Context(), "media"); err != nil {
			t.Errorf("signing region %q: %v", region, err)
		}
	}
	st, _ := store.NewS3(store.S3Config{Endpoint: srv.Endpoint, Region: "us-east-1", AccessKey: srv.AccessKey, SecretKey: srv.SecretKey})
	err := st.Check(t.Context(), "media")
	t.Logf("wrong region: %v", err)
	if err == nil || !strings.Contains(err.Error(), "--s3-region eu-west-3") {
		t.Errorf("signed for the wrong region: %v, want a message naming --s3-region", err)
	}
}
