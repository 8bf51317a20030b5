"""A minimal SMTP server (RFC 5321's happy path): records each message it accepts."""
import socketserver
import threading
from email import message_from_bytes


class SmtpDouble:
    def __init__(self):
        self.messages: list = []
        double = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                self.wfile.write(b"220 smtp.double ESMTP\r\n")
                sender, recipients = None, []
                while line := self.rfile.readline():
                    command = line.decode(errors="replace").strip()
                    verb = command.split(" ", 1)[0].upper()
                    if verb in ("EHLO", "HELO"):
                        self.wfile.write(b"250 smtp.double\r\n")
                    elif verb == "MAIL":
                        sender = command.split(":", 1)[1].strip(" <>")
                        self.wfile.write(b"250 OK\r\n")
                    elif verb == "RCPT":
                        recipients.append(command.split(":", 1)[1].strip(" <>"))
                        self.wfile.write(b"250 OK\r\n")
                    elif verb == "DATA":
                        self.wfile.write(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                        data = b""
                        while (chunk := self.rfile.readline()) not in (b".\r\n", b""):
                            data += chunk
                        double.messages.append({"from": sender, "to": recipients,
                                                "message": message_from_bytes(data)})
                        self.wfile.write(b"250 OK queued\r\n")
                    elif verb == "QUIT":
                        self.wfile.write(b"221 Bye\r\n")
                        return
                    else:
                        self.wfile.write(b"250 OK\r\n")

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
