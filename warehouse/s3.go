package warehouse

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
)

// splitS3 splits s3://bucket/prefix.
func splitS3(u string) (bucket, prefix string) {
	rest := strings.TrimPrefix(u, "s3://")
	bucket, prefix, _ = strings.Cut(rest, "/")
	return bucket, prefix
}

// s3Source is every object under s3://bucket/prefix, listed page by page.
type s3Source struct {
	client   *s3.Client
	bucket   string
	prefix   string
	pageSize int32
}

func (s *s3Source) String() string { return "s3://" + s.bucket + "/" + s.prefix }

func (s *s3Source) close() {}

// endpointFromEnv is the S3 endpoint override of the environment.
func endpointFromEnv() string {
	if e := os.Getenv("AWS_ENDPOINT_URL_S3"); e != "" {
		return e
	}
	return os.Getenv("AWS_ENDPOINT_URL")
}

func newS3Source(ctx context.Context, o *Options) (*s3Source, error) {
	var opts []func(*config.LoadOptions) error
	if o.Region != "" {
		opts = append(opts, config.WithRegion(o.Region))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("loading the AWS configuration: %w", err)
	}
	endpoint := o.EndpointURL
	if endpoint == "" {
		endpoint = endpointFromEnv()
	}
	if cfg.Region == "" {
		// S3 answers from any region with a redirect to the right one;
		// us-east-1 is what the AWS CLI assumes too.
		cfg.Region = "us-east-1"
	}
	client := s3.NewFromConfig(cfg, func(so *s3.Options) {
		// S3-compatible stores often send no checksums: say nothing.
		so.DisableLogOutputChecksumValidationSkipped = true
		if endpoint != "" {
			so.BaseEndpoint = aws.String(endpoint)
			so.UsePathStyle = !o.VirtualHosted
		}
	})
	bucket, prefix := splitS3(o.From)
	return &s3Source{client: client, bucket: bucket, prefix: prefix, pageSize: o.listPageSize}, nil
}

func (s *s3Source) each(ctx context.Context, fn func(object) error) error {
	p := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{
		Bucket:  aws.String(s.bucket),
		Prefix:  aws.String(s.prefix),
		MaxKeys: aws.Int32(s.pageSize),
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return s3Error("listing", s.String(), s.bucket, err)
		}
		for _, obj := range page.Contents {
			key := aws.ToString(obj.Key)
			if strings.HasSuffix(key, "/") || skipName(path.Base(key)) {
				continue
			}
			name := "s3://" + s.bucket + "/" + key
			if err := fn(object{name: name, size: aws.ToInt64(obj.Size), open: func(ctx context.Context) (io.ReadCloser, error) {
				out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(key)})
				if err != nil {
					return nil, s3Error("reading", name, s.bucket, err)
				}
				return out.Body, nil
			}}); err != nil {
				return err
			}
		}
	}
	return nil
}

// s3Error says what went wrong with an S3 call in words a user can act on.
func s3Error(doing, what, bucket string, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	var api smithy.APIError
	if errors.As(err, &api) {
		switch api.ErrorCode() {
		case "NoSuchBucket":
			return fmt.Errorf("%s %s: bucket %q does not exist (NoSuchBucket): %w", doing, what, bucket, err)
		case "InvalidAccessKeyId":
			return fmt.Errorf("%s %s: the AWS access key id is not known to the store (InvalidAccessKeyId): check the credentials: %w", doing, what, err)
		case "SignatureDoesNotMatch":
			return fmt.Errorf("%s %s: the request signature was refused (SignatureDoesNotMatch): check the secret access key: %w", doing, what, err)
		case "AccessDenied", "Forbidden":
			return fmt.Errorf("%s %s: access denied: the credentials lack s3:ListBucket / s3:GetObject on %q: %w", doing, what, bucket, err)
		case "PermanentRedirect", "AuthorizationHeaderMalformed":
			return fmt.Errorf("%s %s: bucket %q is in another region: set --region (or AWS_REGION): %w", doing, what, bucket, err)
		case "NoSuchKey":
			return fmt.Errorf("%s %s: the object disappeared while reading (NoSuchKey): %w", doing, what, err)
		}
	}
	if strings.Contains(err.Error(), "failed to retrieve credentials") || strings.Contains(err.Error(), "no EC2 IMDS role found") {
		return fmt.Errorf("%s %s: no AWS credentials found (environment, shared files, SSO, web identity, container or instance role): %w", doing, what, err)
	}
	return fmt.Errorf("%s %s: %w", doing, what, err)
}
