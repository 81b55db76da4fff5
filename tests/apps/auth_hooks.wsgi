# The phase functions mod_wsgi's WSGIAccessScript, WSGIAuthUserScript and WSGIAuthGroupScript
# call, in one script (tests/auth_scripts.rs). User names choose the behaviour under test.
import hashlib

PASSWORDS = {"spy": "secret", "mole": "pw", "boom-groups": "pw", "canon": "pw"}


def check_password(environ, user, password):
    environ["wsgi.errors"].write("check_password for %s\n" % user)
    if "HTTP_AUTHORIZATION" in environ:
        raise RuntimeError("the Authorization header must not reach an auth script")
    if user == "boom":
        raise ValueError("check_password exploded for " + user)
    if user == "weird":
        return 42
    if user not in PASSWORDS:
        return None
    if password != PASSWORDS[user]:
        return False
    if user == "canon":
        return "canonical-name"
    return True


def get_realm_hash(environ, user, realm):
    if user == "boom":
        raise ValueError("get_realm_hash exploded")
    if user not in PASSWORDS:
        return None
    data = "%s:%s:%s" % (user, realm, PASSWORDS[user])
    return hashlib.md5(data.encode("utf-8")).hexdigest()


def groups_for_user(environ, user):
    if user == "boom-groups":
        raise KeyError("groups_for_user exploded")
    if user == "spy":
        return ["secret-agents", "staff"]
    return []


def allow_access(environ, host):
    if environ.get("HTTP_X_BOOM"):
        raise RuntimeError("allow_access exploded")
    if environ.get("HTTP_X_ODD"):
        return "yes"
    if environ.get("HTTP_X_DENY"):
        return False
    if environ.get("HTTP_X_PASS"):
        return None
    return host in ("127.0.0.1", "localhost", "::1")
