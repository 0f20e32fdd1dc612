"""Scores images with fksteer serve's reward server, using Python's standard library only.

Usage: python3 reward_client.py URL REWARD IMAGE... (e.g. http://127.0.0.1:7860 color:target=#cc2222 a.png)
Prints one JSON line per image: its score and the score's parts (with the text OCR read).
"""
import base64, json, os, sys, urllib.request

def score(url, reward, images, prompts=None, api_key=os.environ.get("FKSTEER_API_KEY")):
    body = {"reward": reward, "images": [base64.b64encode(open(p, "rb").read()).decode() for p in images]}
    if prompts:
        body["prompts"] = prompts
    req = urllib.request.Request(url + "/v1/rewards/score", json.dumps(body).encode(), {"Content-Type": "application/json"})
    if api_key:
        req.add_header("Authorization", "Bearer " + api_key)
    with urllib.request.urlopen(req, timeout=600) as resp:
        return json.load(resp)["scores"]

if __name__ == "__main__":
    for path, s in zip(sys.argv[3:], score(sys.argv[1], sys.argv[2], sys.argv[3:])):
        print(json.dumps({"image": path, **s}))
