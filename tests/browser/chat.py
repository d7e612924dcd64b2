"""Drives the chat example's page in headless Chromium (see run.sh).

usage: chat.py HOST:PORT SCREENSHOT.png
"""
import sys
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

ADDR, SHOT = sys.argv[1], sys.argv[2]
WAIT = 10


def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu",
                "--disable-dev-shm-usage", "--window-size=900,700"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def lines(driver):
    return [p.text for p in driver.find_elements(By.CSS_SELECTOR, "#log p")]


def wait_for(driver, line, what):
    try:
        WebDriverWait(driver, WAIT).until(lambda d: line in lines(d))
    except Exception:
        sys.exit(f"FAIL: {what}: {line!r} never appeared; the page shows {lines(driver)}")


def join(driver, name, room):
    driver.get(f"http://{ADDR}/")
    for field, value in (("name", name), ("room", room)):
        box = driver.find_element(By.ID, field)
        box.clear()
        box.send_keys(value)
    driver.find_element(By.ID, "enter").click()
    wait_for(driver, f"joined {room} as {name}", f"{name} joining {room}")


def say(driver, text):
    driver.find_element(By.ID, "text").send_keys(text)
    driver.find_element(By.ID, "send").click()


def main():
    ada, bob, eve = browser(), browser(), browser()
    try:
        join(ada, "ada", "rust")
        join(bob, "bob", "rust")
        wait_for(ada, "bob joined", "ada hearing bob join")
        join(eve, "eve", "elsewhere")

        say(ada, "hello from ada")
        wait_for(bob, "ada: hello from ada", "bob hearing ada")
        say(bob, "hi ada")
        wait_for(ada, "bob: hi ada", "ada hearing bob")

        bob.quit()  # closes the tab, and its WebSocket
        bob = None
        wait_for(ada, "bob left", "ada hearing bob leave")

        time.sleep(0.3)  # anything misrouted would have arrived by now
        heard = lines(eve)
        if any("ada" in line or "bob" in line for line in heard):
            sys.exit(f"FAIL: another room heard the rust room: {heard}")
        mine = lines(ada)
        if "ada: hello from ada" in mine:
            sys.exit(f"FAIL: ada heard herself back: {mine}")
        ada.save_screenshot(SHOT)
        print(f"browser chat: ok (ada saw {mine}; screenshot {SHOT})")
    finally:
        for driver in (ada, bob, eve):
            if driver is not None:
                driver.quit()


main()
