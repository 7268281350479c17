package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/pflag"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// kafkaFlags are the connection settings shared by every command that talks to Kafka.
type kafkaFlags struct {
	tls, tlsSkipVerify     bool
	tlsCA, tlsCert, tlsKey string
	saslMechanism          string
	saslUser, saslPassword string
}

func bindKafka(fs *pflag.FlagSet) *kafkaFlags {
	k := &kafkaFlags{}
	inGroup(fs, groupKafka, func() { k.bind(fs) })
	return k
}

func (k *kafkaFlags) bind(fs *pflag.FlagSet) {
	fs.BoolVar(&k.tls, "tls", false, "connect to the brokers with TLS")
	fs.StringVar(&k.tlsCA, "tls-ca", "", "`FILE` of PEM CA certificates to trust (default: the system's); implies --tls")
	fs.StringVar(&k.tlsCert, "tls-cert", "", "`FILE`: PEM client certificate for mutual TLS (with --tls-key); implies --tls")
	fs.StringVar(&k.tlsKey, "tls-key", "", "`FILE`: PEM client key for mutual TLS")
	fs.BoolVar(&k.tlsSkipVerify, "tls-insecure-skip-verify", false, "do not verify the brokers' certificates (testing only)")
	fs.StringVar(&k.saslMechanism, "sasl-mechanism", "", "SASL `MECHANISM`: plain, scram-sha-256 or scram-sha-512")
	fs.StringVar(&k.saslUser, "sasl-user", "", "SASL `USER`")
	fs.StringVar(&k.saslPassword, "sasl-password", "", "SASL `PASSWORD` (prefer DWELL_SASL_PASSWORD)")
}

// conn is how a command connects: the seed brokers (--brokers) and these settings.
func (k *kafkaFlags) conn(brokers string) (connectOptions, error) {
	opts, err := k.opts()
	if err != nil {
		return connectOptions{}, usageError{err}
	}
	return connectOptions{Brokers: splitList(brokers), ClientOpts: opts}, nil
}

// opts turns the settings into franz-go options.
func (k *kafkaFlags) opts() ([]kgo.Opt, error) {
	var opts []kgo.Opt
	if k.tls || k.tlsCA != "" || k.tlsCert != "" || k.tlsSkipVerify {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: k.tlsSkipVerify} //nolint:gosec // opt-in flag for tests
		if k.tlsCA != "" {
			pem, err := os.ReadFile(k.tlsCA)
			if err != nil {
				return nil, fmt.Errorf("--tls-ca: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("--tls-ca: %s holds no PEM certificate", k.tlsCA)
			}
			cfg.RootCAs = pool
		}
		if (k.tlsCert == "") != (k.tlsKey == "") {
			return nil, errors.New("--tls-cert and --tls-key go together")
		}
		if k.tlsCert != "" {
			pair, err := tls.LoadX509KeyPair(k.tlsCert, k.tlsKey)
			if err != nil {
				return nil, fmt.Errorf("--tls-cert/--tls-key: %w", err)
			}
			cfg.Certificates = []tls.Certificate{pair}
		}
		opts = append(opts, kgo.DialTLSConfig(cfg))
	}
	switch m := strings.ToLower(k.saslMechanism); m {
	case "":
		if k.saslUser != "" {
			return nil, errors.New("--sasl-user needs --sasl-mechanism (plain, scram-sha-256 or scram-sha-512)")
		}
	case "plain":
		opts = append(opts, kgo.SASL(plain.Auth{User: k.saslUser, Pass: k.saslPassword}.AsMechanism()))
	case "scram-sha-256":
		opts = append(opts, kgo.SASL(scram.Auth{User: k.saslUser, Pass: k.saslPassword}.AsSha256Mechanism()))
	case "scram-sha-512":
		opts = append(opts, kgo.SASL(scram.Auth{User: k.saslUser, Pass: k.saslPassword}.AsSha512Mechanism()))
	default:
		return nil, fmt.Errorf("--sasl-mechanism %q: use plain, scram-sha-256 or scram-sha-512", k.saslMechanism)
	}
	return opts, nil
}
