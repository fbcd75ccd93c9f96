"""Vocabularies, a small sentence grammar and the label templates of every task.

All generators take a :class:`random.Random` and return lower-case words (what is spoken);
:func:`transcript` gives the upper-case LibriSpeech-style transcript.

Example
-------
>>> import random
>>> words = english_sentence(random.Random(3))
>>> 4 <= len(words) <= 24 and all(w.isalpha() for w in words)
True
>>> transcript(["turn", "on", "the", "lights"])
'TURN ON THE LIGHTS'
>>> cmd = fluent_command(random.Random(0))
>>> cmd.intent == f"{cmd.action}_{cmd.object}_{cmd.location}"
True
"""

import random
from dataclasses import dataclass


def transcript(words) -> str:
    """Upper-case, single-spaced transcript (LibriSpeech style).

    Example
    -------
    >>> transcript(["the", "old", "man"])
    'THE OLD MAN'
    """
    return " ".join(w.upper() for w in words)


# ---------------------------------------------------------------------------------------
# English sentences (LibriSpeech stand-in: narrative, audiobook-like)
NAMES = (
    "mary john thomas elizabeth henry margaret william anne robert catherine george alice "
    "edward jane arthur helen charles emily richard martha"
).split()
ADJECTIVES = (
    "old young little great dark bright quiet strange small large cold warm heavy gentle "
    "ancient silent empty narrow broad golden silver green grey white black red distant "
    "hidden simple proud poor rich tired happy careful sudden wild pale deep long"
).split()
NOUNS = (
    "man woman child king queen soldier farmer captain doctor stranger horse dog bird ship "
    "house garden river forest mountain village city road door window letter book table "
    "chair fire lamp bridge church castle field stone tree hill valley island harbour "
    "kitchen room boat wagon sword coat hat bottle basket candle clock mirror picture story "
    "song voice morning evening winter summer"
).split()
TRANSITIVE = (
    "saw found carried opened closed watched followed remembered noticed painted built "
    "bought sold left took brought held touched visited crossed passed reached entered "
    "cleaned burned broke lost kept wanted loved feared heard called answered pushed pulled "
    "lifted dropped hid"
).split()
INTRANSITIVE = (
    "slept laughed waited smiled walked ran fell sang cried listened trembled rested "
    "returned wandered spoke danced arrived disappeared stood whispered"
).split()
ADVERBS = (
    "slowly quickly quietly suddenly gently carefully silently softly loudly happily sadly "
    "nervously eagerly again alone"
).split()
PREPOSITIONS = "in on near behind beside under across through towards beyond along into".split()
TIMES = [
    t.split()
    for t in (
        "yesterday",
        "at night",
        "in the morning",
        "before dawn",
        "after dinner",
        "that evening",
        "at last",
        "once more",
        "long ago",
        "every day",
        "in the spring",
        "at noon",
    )
]
DETERMINERS = "the a this that every his her their my our".split()
CONJUNCTIONS = "and but while because when".split()
# Terms that spoken queries (QbE) look for: nouns of the grammar.
QBE_TERMS = (
    "river castle garden captain horse window letter forest candle mirror island soldier "
    "village bridge winter basket"
).split()


def _article(determiner: str, next_word: str) -> str:
    if determiner == "a" and next_word[0] in "aeiou":
        return "an"
    return determiner


def _noun_phrase(rng: random.Random, noun: str | None = None) -> list[str]:
    if noun is None and rng.random() < 0.2:
        return [rng.choice(NAMES)]
    noun = noun or rng.choice(NOUNS)
    words = [rng.choice(ADJECTIVES)] if rng.random() < 0.5 else []
    words.append(noun)
    if rng.random() < 0.1:
        words += ["of", "the", rng.choice(NOUNS)]
    return [_article(rng.choice(DETERMINERS), words[0])] + words


def _prep_phrase(rng: random.Random) -> list[str]:
    return [rng.choice(PREPOSITIONS)] + _noun_phrase(rng)


def _clause(rng: random.Random, noun: str | None = None) -> list[str]:
    subject = _noun_phrase(rng)
    kind = rng.random()
    if kind < 0.55:
        words = subject + [rng.choice(TRANSITIVE)] + _noun_phrase(rng, noun)
    elif kind < 0.85:
        words = subject + [rng.choice(INTRANSITIVE)]
        if rng.random() < 0.5:
            words.append(rng.choice(ADVERBS))
        if noun is not None:
            words += [rng.choice(PREPOSITIONS)] + _noun_phrase(rng, noun)
    else:
        words = subject + ["was", rng.choice(ADJECTIVES)]
        if noun is not None:
            words += ["near"] + _noun_phrase(rng, noun)
    if noun is None and rng.random() < 0.4:
        words += _prep_phrase(rng)
    return words


def english_sentence(rng: random.Random, *, noun: str | None = None) -> list[str]:
    """A random narrative sentence (4–24 words); ``noun`` forces that noun into it.

    Example
    -------
    >>> import random
    >>> "castle" in english_sentence(random.Random(1), noun="castle")
    True
    """
    words = _clause(rng, noun)
    if rng.random() < 0.3:
        words = rng.choice(TIMES) + words
    if rng.random() < 0.3:
        words += [rng.choice(CONJUNCTIONS)] + _clause(rng)
    return words[:24]


def short_sentence(rng: random.Random) -> list[str]:
    """A single short clause (for speaker, emotion and babble utterances)."""
    return _clause(rng)


# ---------------------------------------------------------------------------------------
# Keyword spotting (Speech Commands v1)
KEYWORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
UNKNOWN_WORDS = (
    "bed bird cat dog eight five four happy house marvin nine one seven sheila six three "
    "tree two wow zero"
).split()
UNKNOWN_LABEL = "_unknown_"
SILENCE_LABEL = "_silence_"


# ---------------------------------------------------------------------------------------
# Intent classification (Fluent Speech Commands: action, object, location)
@dataclass(frozen=True)
class Command:
    """A spoken command and its Fluent-Speech-Commands-style labels."""

    words: list
    action: str
    object: str
    location: str

    @property
    def intent(self) -> str:
        """``action_object_location``."""
        return f"{self.action}_{self.object}_{self.location}"


_LOCATIONS = ("none", "kitchen", "bedroom", "washroom")
_FSC = {
    ("activate", "lights"): (
        "turn on the lights{loc}",
        "switch on the lights{loc}",
        "lights on{loc}",
    ),
    ("deactivate", "lights"): (
        "turn off the lights{loc}",
        "switch off the lights{loc}",
        "lights off{loc}",
    ),
    ("increase", "heat"): (
        "turn up the heat{loc}",
        "increase the heating{loc}",
        "make it warmer{loc}",
    ),
    ("decrease", "heat"): (
        "turn down the heat{loc}",
        "decrease the heating{loc}",
        "make it cooler{loc}",
    ),
    ("increase", "volume"): ("turn up the volume", "increase the volume", "make it louder"),
    ("decrease", "volume"): ("turn down the volume", "decrease the volume", "make it quieter"),
    ("activate", "music"): ("play the music", "put on some music", "start the music"),
    ("deactivate", "music"): ("stop the music", "pause the music", "turn off the music"),
    ("activate", "lamp"): ("turn on the lamp", "switch on the lamp", "lamp on"),
    ("deactivate", "lamp"): ("turn off the lamp", "switch off the lamp", "lamp off"),
    ("bring", "newspaper"): (
        "bring me the newspaper",
        "get me the newspaper",
        "fetch the newspaper",
    ),
    ("bring", "juice"): ("bring me some juice", "get me the juice", "fetch me some juice"),
    ("bring", "socks"): ("bring me my socks", "get me my socks", "fetch my socks"),
    ("bring", "shoes"): ("bring me my shoes", "get me my shoes", "fetch my shoes"),
}
_LANGUAGES = ("chinese", "korean", "english", "german")
_LANGUAGE_TEMPLATES = (
    "change the language to {obj}",
    "switch to {obj}",
    "set the language to {obj}",
    "i want to use {obj}",
)
_WITH_LOCATION = {"lights", "heat"}


def fluent_command(rng: random.Random) -> Command:
    """A Fluent-Speech-Commands-style command (30 intents)."""
    if rng.random() < 4 / 30:
        obj = rng.choice(_LANGUAGES)
        text = rng.choice(_LANGUAGE_TEMPLATES).format(obj=obj)
        return Command(text.split(), "change_language", obj, "none")
    action, obj = rng.choice(sorted(_FSC))
    location = rng.choice(_LOCATIONS) if obj in _WITH_LOCATION else "none"
    loc = "" if location == "none" else f" in the {location}"
    text = rng.choice(_FSC[(action, obj)]).format(loc=loc)
    return Command(text.split(), action, obj, location)


# ---------------------------------------------------------------------------------------
# Slot-tagged requests: SLURP (18 scenarios) and SNIPS-style slot filling
@dataclass(frozen=True)
class Request:
    """A spoken request as segments ``(words, slot_type or None)`` with its labels."""

    segments: list
    scenario: str
    action: str

    @property
    def words(self) -> list:
        """All spoken words."""
        return [w for seg, _ in self.segments for w in seg]

    @property
    def slots(self) -> str:
        """``type=VALUE;type=VALUE`` in spoken order (values upper-case like ``wrd``)."""
        return ";".join(f"{slot}={transcript(seg)}" for seg, slot in self.segments if slot)

    @property
    def slot_words(self) -> str:
        """Upper-case words with SUPERB-style slot tags around slot values.

        Example
        -------
        >>> Request([(["play"], None), (["jazz"], "genre")], "play", "music").slot_words
        'PLAY B-genre JAZZ E-genre'
        """
        parts = []
        for seg, slot in self.segments:
            parts.append(f"B-{slot} {transcript(seg)} E-{slot}" if slot else transcript(seg))
        return " ".join(parts)


SLOT_VALUES = {
    "time": ["seven am", "six thirty", "noon", "eight in the morning", "ten pm", "half past five"],
    "date": ["today", "tomorrow", "on monday", "this weekend", "next friday", "tonight"],
    "event_name": ["meeting", "dentist appointment", "birthday party", "team lunch", "yoga class"],
    "food_type": ["pasta", "pizza", "chicken curry", "pancakes", "fried rice", "sushi", "soup"],
    "place_name": ["london", "paris", "tokyo", "new york", "berlin", "madrid", "boston", "rome"],
    "person": ["john", "mary", "my boss", "alice", "my mother", "peter"],
    "house_place": ["kitchen", "bedroom", "living room", "bathroom", "hallway"],
    "list_name": ["shopping", "grocery", "todo", "holiday"],
    "music_genre": ["jazz", "rock", "classical", "pop", "country", "blues"],
    "news_topic": ["sports", "politics", "technology", "the economy", "science"],
    "artist_name": ["the beatles", "mozart", "adele", "elvis presley", "queen"],
    "radio_name": ["classic fm", "jazz fm", "radio one", "city radio"],
    "podcast_name": ["daily news", "science weekly", "history hour"],
    "definition_word": ["serendipity", "algorithm", "photosynthesis", "democracy"],
    "media_type": ["twitter", "facebook", "instagram"],
    "business_name": ["pizza hut", "the corner cafe", "golden dragon", "burger palace"],
    "transport_type": ["train", "bus", "plane", "ferry"],
    "weather_descriptor": ["rain", "snow"],
    # SNIPS slots
    "playlist": ["workout", "road trip", "chill evening", "party"],
    "party_size_number": ["two", "three", "four", "six"],
    "restaurant_name": ["the blue door", "luigis", "the golden fork", "sea breeze"],
    "timerange": ["tonight", "tomorrow evening", "at eight pm", "on saturday"],
    "city": ["london", "chicago", "sydney", "dublin", "toronto"],
    "music_item": ["song", "album", "track"],
    "object_name": ["the hobbit", "war and peace", "little women", "the odyssey"],
    "rating_value": ["one", "two", "three", "four", "five"],
    "object_type": ["book", "movie", "game", "album"],
    "movie_name": ["the lost city", "night train", "blue planet", "the last king"],
    "location_name": ["the odeon", "city cinema", "the plaza theatre"],
}

# scenario → action → templates; "{slot}" marks a slot value.
SLURP_TEMPLATES = {
    "alarm": {
        "set": ["wake me up at {time}", "set an alarm for {time}"],
        "remove": ["cancel my alarm for {time}", "remove all my alarms"],
        "query": ["what alarms do i have", "when is my alarm set for {date}"],
    },
    "audio": {
        "volume_up": ["turn the volume up", "make the speaker louder"],
        "volume_mute": ["mute the speakers", "be quiet for a while"],
    },
    "calendar": {
        "set": ["remind me about the {event_name} {date}", "add a {event_name} {date}"],
        "query": ["what is on my calendar {date}", "do i have anything {date}"],
        "remove": ["delete the {event_name} from my calendar"],
    },
    "cooking": {"recipe": ["how do i cook {food_type}", "give me a recipe for {food_type}"]},
    "datetime": {"query": ["what time is it in {place_name}", "what is the date {date}"]},
    "email": {
        "sendemail": ["send an email to {person}", "email {person} about the {event_name}"],
        "query": ["do i have new emails", "check my emails from {person}"],
    },
    "general": {
        "joke": ["tell me a joke", "say something funny"],
        "quirky": ["what is the meaning of life", "are you happy today"],
    },
    "iot": {
        "hue_lightoff": ["turn off the lights in the {house_place}"],
        "hue_lightup": ["brighten the lights in the {house_place}"],
        "cleaning": ["start the vacuum cleaner", "clean the {house_place}"],
    },
    "lists": {
        "createoradd": ["add {food_type} to my {list_name} list"],
        "query": ["what is on my {list_name} list"],
    },
    "music": {
        "likeness": ["i like {music_genre} music", "i really love {artist_name}"],
        "query": ["what song is this", "who sings this song"],
    },
    "news": {"query": ["what is the latest news about {news_topic}", "any {news_topic} news"]},
    "play": {
        "music": ["play {music_genre} music", "play some songs by {artist_name}"],
        "radio": ["play {radio_name}", "tune in to {radio_name}"],
        "podcasts": ["play the {podcast_name} podcast", "next episode of {podcast_name}"],
        "audiobook": ["continue my audiobook", "resume the audiobook"],
    },
    "qa": {
        "factoid": ["how many people live in {place_name}", "how far is {place_name}"],
        "definition": ["what does {definition_word} mean", "define {definition_word}"],
    },
    "recommendation": {
        "events": ["are there any events {date}", "what can i do in {place_name} {date}"],
        "locations": ["recommend a good restaurant in {place_name}"],
    },
    "social": {
        "post": ["post on {media_type} that i am running late", "tweet that i am at home"],
        "query": ["what is new on {media_type}"],
    },
    "takeaway": {
        "order": ["order some {food_type} from {business_name}", "i want {food_type} delivered"],
        "query": ["is my order from {business_name} on its way"],
    },
    "transport": {
        "ticket": ["book a {transport_type} ticket to {place_name}"],
        "query": ["when is the next {transport_type} to {place_name}"],
        "taxi": ["call me a taxi to {place_name}", "get me a cab"],
    },
    "weather": {
        "query": [
            "what is the weather like in {place_name} {date}",
            "will it {weather_descriptor} {date}",
        ],
    },
}

SNIPS_TEMPLATES = {
    "AddToPlaylist": [
        "add {artist_name} to my {playlist} playlist",
        "put this {music_item} on {playlist}",
    ],
    "BookRestaurant": ["book a table for {party_size_number} at {restaurant_name} {timerange}"],
    "GetWeather": ["what will the weather be in {city} {timerange}", "is it cold in {city}"],
    "PlayMusic": ["play the {music_item} by {artist_name}", "play some {music_genre}"],
    "RateBook": [
        "rate {object_name} {rating_value} out of five",
        "give {object_name} {rating_value} stars",
    ],
    "SearchCreativeWork": ["find the {object_type} called {object_name}"],
    "SearchScreeningEvent": [
        "when is {movie_name} playing at {location_name}",
        "show me times for {movie_name}",
    ],
}


def _fill(rng: random.Random, template: str) -> list:
    segments = []
    for piece in template.replace("{", "|{").replace("}", "}|").split("|"):
        piece = piece.strip()
        if not piece:
            continue
        if piece.startswith("{"):
            slot = piece[1:-1]
            segments.append((rng.choice(SLOT_VALUES[slot]).split(), slot))
        else:
            segments.append((piece.split(), None))
    return segments


def slurp_request(rng: random.Random) -> Request:
    """A SLURP-style request: one of 18 scenarios, an action and slots."""
    scenario = rng.choice(sorted(SLURP_TEMPLATES))
    action = rng.choice(sorted(SLURP_TEMPLATES[scenario]))
    template = rng.choice(SLURP_TEMPLATES[scenario][action])
    return Request(_fill(rng, template), scenario, action)


def snips_request(rng: random.Random) -> Request:
    """A SNIPS-style request (7 intents; ``scenario`` holds the intent, ``action`` is empty)."""
    intent = rng.choice(sorted(SNIPS_TEMPLATES))
    return Request(_fill(rng, rng.choice(SNIPS_TEMPLATES[intent])), intent, "")


# ---------------------------------------------------------------------------------------
# Low-resource languages (CommonVoice stand-ins): small word lists and simple sentences
WELSH = {
    "nouns": "ci tŷ mynydd llyfr bara dŵr haul môr gwynt glaw plentyn ceffyl tad bwrdd".split(),
    "adjectives": "fawr fach goch las dda hapus newydd hen ddu wyn".split(),
    "phrases": [
        "bore da",
        "nos da",
        "diolch yn fawr",
        "croeso i gymru",
        "sut wyt ti",
        "dw i'n hapus",
        "mae hi'n bwrw glaw",
        "ble mae'r ysgol",
        "un dau tri pedwar pump",
        "iechyd da",
    ],
}
BASQUE = {
    "nouns": (
        "etxea mendia ibaia itsasoa eguzkia euria haizea txakurra katua zaldia ogia ura "
        "liburua laguna herria"
    ).split(),
    "adjectives": "handia txikia gorria urdina berdea beltza zuria zaharra berria polita".split(),
    "phrases": [
        "egun on",
        "gabon",
        "eskerrik asko",
        "kaixo laguna",
        "zer moduz",
        "ongi etorri",
        "bat bi hiru lau bost",
        "gaur euria dago",
        "bihar arte",
        "agur bero bat",
    ],
}


def low_resource_sentence(rng: random.Random, language: str) -> list[str]:
    """A short Welsh (``cy``) or Basque (``eu``) sentence.

    Example
    -------
    >>> import random
    >>> low_resource_sentence(random.Random(0), "fr")
    Traceback (most recent call last):
    ...
    ValueError: no word list for language 'fr'; valid: cy, eu
    """
    lists = {"cy": WELSH, "eu": BASQUE}
    if language not in lists:
        raise ValueError(f"no word list for language {language!r}; valid: {', '.join(lists)}")
    words = lists[language]
    if rng.random() < 0.3:
        return rng.choice(words["phrases"]).split()
    noun, adjective = rng.choice(words["nouns"]), rng.choice(words["adjectives"])
    if language == "cy":  # "mae'r ci yn fawr": the dog is big
        sentence = ["mae'r", noun, "yn", adjective]
    else:  # "etxea handia da": the house is big
        sentence = [noun, adjective, "da"]
    if rng.random() < 0.4:
        sentence += rng.choice(words["phrases"]).split()
    return sentence
