package pool

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/feature/rds/auth"

	"github.com/pgbridge/pgbridge/routing"
)

// CredentialsProvider gives the AWS credentials that sign RDS IAM auth
// tokens; it is the AWS SDK's aws.CredentialsProvider. It is asked on every
// IAM dial, so a provider that fetches credentials remotely should be
// wrapped in aws.NewCredentialsCache (the default chain already is).
type CredentialsProvider = aws.CredentialsProvider

// iamSigner builds RDS IAM auth tokens. The default credential chain is
// loaded on first use and kept; a failed load is retried on the next dial.
type iamSigner struct {
	mu    sync.Mutex
	chain aws.CredentialsProvider
}

// token returns a fresh token for user at the backend endpoint: a SigV4
// presigned "connect" request (host:port/?Action=connect&DBUser=...&X-Amz-...)
// valid for 15 minutes, which RDS accepts as the password of a role granted
// rds_iam. It is built per dial, so it never expires in the pool.
func (s *iamSigner) token(ctx context.Context, creds aws.CredentialsProvider, b routing.Backend, user string) (string, error) {
	if creds == nil {
		var err error
		if creds, err = s.defaultChain(ctx, b.AWSRegion); err != nil {
			return "", err
		}
	}
	endpoint := net.JoinHostPort(b.Host, strconv.Itoa(b.Port))
	tok, err := auth.BuildAuthToken(ctx, endpoint, b.AWSRegion, user, creds)
	if err != nil {
		return "", fmt.Errorf("pool: RDS IAM auth token for %s: %w", user, err)
	}
	return tok, nil
}

func (s *iamSigner) defaultChain(ctx context.Context, region string) (aws.CredentialsProvider, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.chain != nil {
		return s.chain, nil
	}
	cfg, err := awsconfig.LoadDefaultConfig(ctx, awsconfig.WithRegion(region))
	if err != nil {
		return nil, fmt.Errorf("pool: AWS credentials for IAM authentication: %w", err)
	}
	p := cfg.Credentials
	if p == nil {
		return nil, errors.New("pool: AWS credentials for IAM authentication: the default chain found none")
	}
	if _, cached := p.(*aws.CredentialsCache); !cached {
		p = aws.NewCredentialsCache(p)
	}
	s.chain = p
	return p, nil
}
