# A tiny Rack app for puma: answers 200 with `X-Pid: <pid>` and the pid as body (the pid of the puma
# process that served the request).
run lambda { |_env|
  body = Process.pid.to_s
  [200, { 'Content-Type' => 'text/plain', 'X-Pid' => body, 'Content-Length' => body.bytesize.to_s }, [body]]
}
