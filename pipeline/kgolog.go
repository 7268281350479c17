package pipeline

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/twmb/franz-go/pkg/kgo"
)

// kafkaLogger passes the Kafka client's own log lines (connection trouble, retries, group
// and transaction state changes) to the processor's slog logger, under component=kafka.
type kafkaLogger struct {
	l     *slog.Logger
	level kgo.LogLevel
}

// newKafkaLogger returns the client logger for level: none, error, warn (default), info or debug.
func newKafkaLogger(l *slog.Logger, level string) (kgo.Logger, error) {
	lv := map[string]kgo.LogLevel{"none": kgo.LogLevelNone, "error": kgo.LogLevelError, "": kgo.LogLevelWarn,
		"warn": kgo.LogLevelWarn, "info": kgo.LogLevelInfo, "debug": kgo.LogLevelDebug}
	v, ok := lv[level]
	if !ok {
		return nil, configError(fmt.Errorf("pipeline: kafka log level %q: use none, error, warn, info or debug; pass --kafka-log-level", level))
	}
	return kafkaLogger{l: l.With("component", "kafka"), level: v}, nil
}

func (k kafkaLogger) Level() kgo.LogLevel { return k.level }

func (k kafkaLogger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	sl := slog.LevelDebug
	switch level {
	case kgo.LogLevelError:
		sl = slog.LevelError
	case kgo.LogLevelWarn:
		sl = slog.LevelWarn
	case kgo.LogLevelInfo:
		sl = slog.LevelInfo
	}
	k.l.Log(context.Background(), sl, msg, keyvals...)
}
