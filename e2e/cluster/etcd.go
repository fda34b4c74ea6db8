package main

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

// freePort asks the kernel for a free loopback port. The listener is closed again, so another
// process may take the port before it is used; startEtcd retries on that.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func loopbackURL(port int) url.URL {
	return url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", port)}
}

// startEtcd starts a single-member embedded etcd with its data under dir and its log in
// logFile, listening for clients and peers on free loopback ports. It returns the server and
// its client URL once it serves.
func startEtcd(dir, logFile string) (*embed.Etcd, string, error) {
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		clientPort, err := freePort()
		if err != nil {
			return nil, "", err
		}
		peerPort, err := freePort()
		if err != nil {
			return nil, "", err
		}
		cfg := embed.NewConfig()
		cfg.Name = "testcluster"
		cfg.Dir = filepath.Join(dir, "data")
		cfg.WalDir = filepath.Join(dir, "wal")
		clientURL, peerURL := loopbackURL(clientPort), loopbackURL(peerPort)
		cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{clientURL}, []url.URL{clientURL}
		cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{peerURL}, []url.URL{peerURL}
		cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
		cfg.Logger = "zap"
		cfg.LogLevel = "info"
		cfg.LogOutputs = []string{logFile}
		// A throwaway test store: durability buys nothing and fsync costs seconds.
		cfg.UnsafeNoFsync = true
		cfg.SnapshotCount = 5000
		e, err := embed.StartEtcd(cfg)
		if err != nil {
			lastErr = err
			if isAddrInUse(err) {
				continue
			}
			return nil, "", fmt.Errorf("etcd: %w", err)
		}
		select {
		case <-e.Server.ReadyNotify():
			return e, clientURL.String(), nil
		case err := <-e.Err():
			e.Close()
			return nil, "", fmt.Errorf("etcd: %w", err)
		case <-time.After(30 * time.Second):
			e.Close()
			return nil, "", errors.New("etcd: not ready after 30s")
		}
	}
	return nil, "", fmt.Errorf("etcd: no free port: %w", lastErr)
}

func isAddrInUse(err error) bool {
	return err != nil && strings.Contains(err.Error(), "address already in use")
}
