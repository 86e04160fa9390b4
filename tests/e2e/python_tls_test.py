#!/usr/bin/env python3
"""Security with an independent client (Debian's python3-grpcio, stubs compiled here by protoc):
certificates made now by openssl, the real server started with TLS + mTLS + API keys + the
plaintext health port + JSON logs. Checks: Predict over mTLS with a key; no key, a wrong key →
UNAUTHENTICATED; no client certificate → the handshake fails; plaintext to the TLS port fails;
the health port answers SERVING without TLS or key; SIGHUP (a real signal) reloads the key file
while the server runs; every log line is one JSON object, the request lines with the key's name
and never the key; a non-loopback plaintext keyless bind warns. SIGTERM → exit 0.

  python_tls_test.py --server BIN --model DIR --image PNG --protoc PROTOC --plugin PLUGIN
                     --proto-dir proto --grpc-proto /usr/share/grpc-proto
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

KEY_A = "aaaaaaaaaaaaaaaaaaaa-python-agent-a"
KEY_B = "bbbbbbbbbbbbbbbbbbbb-python-agent-b"


def sh(cmd, cwd):
    subprocess.run(cmd, shell=True, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main():
    ap = argparse.ArgumentParser()
    for a in ("--server", "--model", "--image", "--protoc", "--plugin", "--proto-dir", "--grpc-proto"):
        ap.add_argument(a, required=True)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="vlmserve_tls_")
    third = os.path.join(tmp, "protos", "std_grpc", "health", "v1")
    os.makedirs(third)
    with open(os.path.join(args.grpc_proto, "grpc/health/v1/health.proto")) as f, \
            open(os.path.join(third, "health.proto"), "w") as g:
        g.write(f.read())
    subprocess.run([args.protoc, "-I", args.proto_dir, "-I", os.path.join(tmp, "protos"),
                    f"--python_out={tmp}", f"--plugin=protoc-gen-grpc_python={args.plugin}",
                    f"--grpc_python_out={tmp}", "vlmserve/v1/vlmserve.proto",
                    "std_grpc/health/v1/health.proto"], check=True)
    sys.path.insert(0, tmp)
    import grpc
    from std_grpc.health.v1 import health_pb2, health_pb2_grpc
    from vlmserve.v1 import vlmserve_pb2, vlmserve_pb2_grpc

    ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
    sh(f"openssl req -x509 {ec} -keyout ca.key -out ca.pem -days 2 -subj /CN=py-ca", tmp)
    sh("printf 'subjectAltName=DNS:localhost,IP:127.0.0.1' > san.ext", tmp)
    sh(f"openssl req {ec} -keyout server.key -out server.csr -subj /CN=localhost", tmp)
    sh("openssl x509 -req -CAcreateserial -in server.csr -CA ca.pem -CAkey ca.key -out server.pem "
       "-days 2 -extfile san.ext", tmp)
    sh(f"openssl req {ec} -keyout client.key -out client.csr -subj /CN=py-agent", tmp)
    sh("openssl x509 -req -CAcreateserial -in client.csr -CA ca.pem -CAkey ca.key -out client.pem -days 2", tmp)
    keys = os.path.join(tmp, "keys")
    with open(keys, "w") as f:
        f.write(f"agent-a:{KEY_A}\n")
    os.chmod(keys, 0o600)
    read = lambda name: open(os.path.join(tmp, name), "rb").read()

    port_file, health_file = os.path.join(tmp, "port"), os.path.join(tmp, "health")
    log_path = os.path.join(tmp, "server.log")
    log = open(log_path, "w")
    proc = subprocess.Popen([args.server, "--model", args.model, "--port", "0", "--port-file", port_file,
                             "--tls-cert", os.path.join(tmp, "server.pem"), "--tls-key", os.path.join(tmp, "server.key"),
                             "--tls-client-ca", os.path.join(tmp, "ca.pem"), "--api-key-file", keys,
                             "--health-port", "0", "--log-format", "json"], stdout=log, stderr=subprocess.STDOUT)
    try:
        for _ in range(300):
            if os.path.exists(port_file) and open(port_file).read().strip():
                break
            time.sleep(0.05)
        port = int(open(port_file).read())
        # The health port is logged; find it.
        health_port = None
        for _ in range(300):
            for line in open(log_path):
                j = json.loads(line)
                if "health probes" in j.get("msg", ""):
                    health_port = int(j["msg"].split(":")[-1].split()[0])
            if health_port:
                break
            time.sleep(0.05)
        assert health_port, open(log_path).read()
        hstub = health_pb2_grpc.HealthStub(grpc.insecure_channel(f"127.0.0.1:{health_port}"))
        for _ in range(300):
            if hstub.Check(health_pb2.HealthCheckRequest()).status == health_pb2.HealthCheckResponse.SERVING:
                break
            time.sleep(0.05)
        assert hstub.Check(health_pb2.HealthCheckRequest()).status == health_pb2.HealthCheckResponse.SERVING
        print("PASS health port: SERVING over plaintext without a key")

        mtls = grpc.ssl_channel_credentials(read("ca.pem"), read("client.key"), read("client.pem"))
        stub = vlmserve_pb2_grpc.VlmServiceStub(grpc.secure_channel(f"localhost:{port}", mtls))
        req = vlmserve_pb2.PredictRequest(prompt=b"Pick a button.", request_id="py-tls")
        req.grid.encoded = open(args.image, "rb").read()
        req.options.max_new_tokens = 24

        def predict(stub, key):
            md = [("authorization", f"Bearer {key}")] if key else []
            return [m.result for m in stub.Predict(req, metadata=md, timeout=60) if m.HasField("result")][0]

        result = predict(stub, KEY_A)
        assert json.loads(result.text)["button"] == result.action.button, result.text
        print(f"PASS Predict over mTLS with an API key: {result.text}")
        for key in (None, "wrong-key-wrong-key-wrong", KEY_A[:-1] + "X"):
            try:
                predict(stub, key)
                raise AssertionError(f"key {key!r} was accepted")
            except grpc.RpcError as e:
                assert e.code() == grpc.StatusCode.UNAUTHENTICATED, (key, e.code(), e.details())
        print("PASS no key, a wrong key, a key one byte off -> UNAUTHENTICATED")

        for name, creds, target in [
                ("no client certificate", grpc.ssl_channel_credentials(read("ca.pem")), f"localhost:{port}"),
                ("plaintext", None, f"127.0.0.1:{port}")]:
            ch = grpc.secure_channel(target, creds) if creds else grpc.insecure_channel(target)
            try:
                predict(vlmserve_pb2_grpc.VlmServiceStub(ch), KEY_A)
                raise AssertionError(f"{name} was accepted")
            except grpc.RpcError as e:
                assert e.code() == grpc.StatusCode.UNAVAILABLE, (name, e.code(), e.details())
        print("PASS no client certificate, plaintext to the TLS port -> the handshake fails")

        with open(keys, "w") as f:
            f.write(f"agent-b:{KEY_B}\n")
        proc.send_signal(signal.SIGHUP)
        deadline = time.time() + 10
        while True:
            try:
                predict(stub, KEY_B)
                break
            except grpc.RpcError as e:
                assert e.code() == grpc.StatusCode.UNAUTHENTICATED and time.time() < deadline, e
                time.sleep(0.1)
        try:
            predict(stub, KEY_A)
            raise AssertionError("the old key still works after SIGHUP")
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.UNAUTHENTICATED
        print("PASS SIGHUP reloads the key file (new key in, old key out)")

        # Our own CLI over mTLS with a key from the environment (never on the command line).
        client_bin = os.path.join(os.path.dirname(args.server), "vlmserve-client")
        env = dict(os.environ, VLMSERVE_API_KEY=KEY_B)
        info = subprocess.run([client_bin, "info", "--server", f"localhost:{port}",
                               "--tls-ca", os.path.join(tmp, "ca.pem"), "--tls-cert", os.path.join(tmp, "client.pem"),
                               "--tls-key", os.path.join(tmp, "client.key")], env=env, capture_output=True, text=True)
        assert info.returncode == 0 and json.loads(info.stdout)["model_type"] == "gemma3", (info.stdout, info.stderr)
        print("PASS vlmserve-client info over mTLS with $VLMSERVE_API_KEY")

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        log.close()
        lines = open(log_path).read().splitlines()
        objs = [json.loads(l) for l in lines]  # every line parses
        requests = [o for o in objs if o.get("event") == "predict"]
        assert any(o.get("key") == "agent-a" and o.get("code") == "OK" for o in requests), requests
        assert any(o.get("code") == "UNAUTHENTICATED" for o in requests), requests
        text = open(log_path).read()
        assert KEY_A not in text and KEY_B not in text, "a key reached the log"
        print(f"PASS {len(lines)} log lines, each one JSON object; request lines name the key, never show it")
    finally:
        if proc.poll() is None:
            proc.kill()

    # Plaintext, keyless, on every address: a warning names the risk.
    out = subprocess.Popen([args.server, "--model", args.model, "--listen", "0.0.0.0", "--port", "0"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = ""
    deadline = time.time() + 20
    while "without TLS or API keys" not in seen and time.time() < deadline:
        line = out.stdout.readline()
        if not line:
            break
        seen += line
    out.send_signal(signal.SIGTERM)
    out.communicate(timeout=30)
    assert "without TLS or API keys" in seen, seen
    print("PASS a plaintext keyless bind on 0.0.0.0 warns")


if __name__ == "__main__":
    main()
