"""What the tests use to run and talk to a server. Import from the module that owns a name;
this package exports nothing itself.

    common.py     ROOT, TARGET / IS_PALFREY / SERVER_NAME (which server is under test), the
                  bounds of every wait (START_TIMEOUT, STOP_TIMEOUT, SOCK_TIMEOUT), free_port,
                  wait_until (a bounded poll)
    server.py     server processes: ServerProcess (app + args on a free port), Proc (exact
                  args), SupervisedServer (a process group, for --workers/--reload/gunicorn),
                  the fixture bodies that stop them, clean_env, RUNNING_RE; reading their logs
                  (wait_for_log, catch_up, check_one_warning, ACCESS_RE); pids from /proc
    client.py     over real sockets: RawConn and Response, raw_request, simple_get,
                  assert_error_response / send_expect_error (a server-made 4xx/5xx), unix_request,
                  get / get_pid and Load (one GET per connection, and a load of them);
                  ConnectionClosed and ReadTimeout (not AssertionErrors: catch them by name)
    ws_client.py  a raw WebSocket client on RawConn: WsConn, frame, handshake_request
    harness.py    the compiled protocol in-process, no socket: Harness / Connection decide where
                  reads split; Outcome, parse_responses, check_invariants, server_frames
    nginx.py      nginx in front of a server: NGINX, running_nginx
    h2.py         HTTP/2: its servers (h2c, TLS; Hypercorn as a reference), H2Client on h2,
                  RawH2 for frames h2 refuses to send, /proc figures, curl and nghttp

tests/conftest.py holds only fixtures and hooks (server, server_factory, module_server_factory,
shared_server, any_loop_server, any_loop_scope_server). tests/apps*.py and tests/ws_apps.py are
the ASGI apps servers run ("tests.apps:app"); tests/fuzz/ the fuzz targets, on harness.py.

Where names used to be (for branches written before this layout):

    tests.conftest        ROOT, TARGET, IS_PALFREY, SERVER_NAME, START_TIMEOUT, STOP_TIMEOUT,
                          SOCK_TIMEOUT, free_port, wait_until             -> support.common
                          ServerProcess, start_server, RUNNING_RE, ACCESS_RE,
                          check_one_warning                               -> support.server
                          RawConn, Response, ConnectionClosed, ReadTimeout, raw_request,
                          simple_get, ERROR_BODIES, assert_error_response,
                          send_expect_error                               -> support.client
                          TEST_TIMEOUT                                    -> pyproject's timeout
    tests.support         Proc, ScriptProc, clean_env,
                          procs_stopped_at_teardown                       -> support.server
                          RUNNING_ANY                           -> support.server.RUNNING_RE
                          unix_request                                    -> support.client
                          NGINX, NGINX_CONF, running_nginx                -> support.nginx
    tests.process_support SupervisedServer, supervised_servers, process_gone,
                          group_members, worker_pids                      -> support.server
                          get, get_pid, Load                              -> support.client
                          wait_for                              -> support.common.wait_until
    tests.ws_raw          everything                                      -> support.ws_client
    tests.h2_support      everything                                      -> support.h2
    tests.fuzz.driver     Driver(app)             -> support.harness.Harness (the fuzz one:
                                                     tests.fuzz.apps.new_driver(app))
                          FakeTransport, Outcome, parse_responses, ParsedResponse, BadOutput,
                          check_invariants, SERVER_ERRORS                 -> support.harness
                          LIMITS, fuzz_app                                -> tests.fuzz.apps
    tests.fuzz.ws_driver  WebSocketDriver         -> tests.fuzz.websocket.WebSocketEcho
                          HandOverTransport       -> support.harness.FakeTransport
                          HANDSHAKE, KEY          -> support.harness.WS_HANDSHAKE, WS_KEY
                          server_frames                                   -> support.harness
                          Reading, NO_CLOSE, wsproto_reading, check_echoes -> tests.fuzz.websocket
"""
