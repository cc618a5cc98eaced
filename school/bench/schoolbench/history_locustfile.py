# The Locust equivalent of the history phase's behavior set (history.go):
# each user (user i of the run) calls rtm.connect, holds the websocket it
# names, reading whatever pond sends on it, and, from a random phase, calls
# conversations.history every EVERY_MS, decoding the reply to check ok.
# FastHttpUser is Locust's fastest HTTP client (geventhttpclient); the
# websocket is websocket-client's, on gevent's sockets (Locust patches
# them). Read by schoolbench's locust phase; not part of koipond.
import itertools
import os
import random

import gevent
import websocket
from locust import constant_pacing, task
from locust.contrib.fasthttp import FastHttpUser
from locust.exception import StopUser

EVERY = int(os.environ["EVERY_MS"]) / 1000.0
FORM = os.environ["FORM"]
_ids = itertools.count()


class Koi(FastHttpUser):
    wait_time = constant_pacing(EVERY)

    def on_start(self):
        self.ws = None
        self.headers = {
            "Authorization": "Bearer xoxp-pond-%d" % next(_ids),
            "Content-Type": "application/x-www-form-urlencoded",
        }
        r = self.client.post("/api/rtm.connect", data="", headers=self.headers)
        try:
            body = r.json() if r.status_code == 200 else {}
        except ValueError:  # a 200 that is not JSON
            body = {}
        if not isinstance(body, dict) or body.get("ok") is not True or not isinstance(body.get("url"), str):
            print("rtm.connect: HTTP %d" % r.status_code)
            raise StopUser()
        self.ws = websocket.create_connection(body["url"])
        self.reader = gevent.spawn(self._read)
        gevent.sleep(random.random() * EVERY)

    def _read(self):
        try:
            while True:
                self.ws.recv()
        except Exception:
            pass

    @task
    def history(self):
        r = self.client.post("/api/conversations.history", data=FORM, headers=self.headers)
        if r.status_code != 200 or r.json().get("ok") is not True:
            print("history: HTTP %d" % r.status_code)

    def on_stop(self):
        if self.ws is not None:
            self.ws.close()
            self.reader.kill()
